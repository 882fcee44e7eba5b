-- bpd-webhooks engine: what PostGraphile shows, and last because it comments
-- on what every file before it made.
--
-- PostGraphile (api/preset.ts) reads schema webhooks alone: each function there
-- becomes a GraphQL query or mutation named after it (create_webhook: createWebhook),
-- each table a type. Helpers live in webhooks_private and webhooks_relay, which it
-- never reads, so they need no hiding. Smart comments: the first lines document the
-- GraphQL type or field, an @behavior line adds or removes what it generates.
-- Writes go through the API functions only, never the generated CRUD mutations.

comment on table webhooks.webhooks is $$
@behavior -insert -update -delete
A webhook: where to POST which contact fields when which actions happen. The signing secret is not here: it is shown once, by createWebhook and rotateWebhookSecret.$$;
comment on column webhooks.webhooks.company_id is 'The company that owns the webhook (always the caller''s).';
comment on column webhooks.webhooks.fields is 'The contact fields sent (besides id); see contactFields.';
comment on column webhooks.webhooks.actions is 'The actions that fire the webhook.';
comment on column webhooks.webhooks.version is 'One more at each change of a setting updateWebhook or setWebhookDelivery writes (or of deletedFilterTarget), not at a disable, an enable or a secret rotation: give it back as updateWebhook''s expectedVersion, so that a change made since you read it is not overwritten.';
comment on column webhooks.webhooks.status_id is 'Only for status actions: fire for this status tag only.';
comment on column webhooks.webhooks.user_id is 'Only for contact.user_assigned: fire for this user only.';
comment on column webhooks.webhooks.ignore_sources is 'Sources (webhooks.source) whose changes never fire this webhook, e.g. an integration''s own writes; unknown stands for changes that name no source.';
comment on column webhooks.webhooks.watch_fields is 'Contact fields watched: if any, contact.updated and contact.saved fire only when one of them changed. Empty: any change.';
comment on column webhooks.webhooks.conditions is 'A condition the contact must meet, e.g. {"field": "state", "op": "in", "value": ["VA", "MD"]}; null: always. Grammar in docs/filters.md.';
comment on column webhooks.webhooks.enabled is 'False: disabled ("Webhook Status: Disabled"); nothing new is queued.';
-- disabled_by, actor and a backfill's created_by are answered by webhooks_disabled_by,
-- audit_log_actor and backfills_created_by (55_report.sql), their first 200 characters
comment on column webhooks.webhooks.disabled_by is '@behavior -*';
comment on function webhooks.webhooks_disabled_by(webhooks.webhooks) is 'Who disabled it (the token subject, its first 200 characters), or the relay: when the receiver answered 410, or when every attempt had failed for webhooks.auto_disable_after.';
comment on column webhooks.webhooks.secret_rotated_at is 'When the signing secret was last rotated.';
comment on column webhooks.webhooks.max_in_flight is 'At most this many requests to this webhook at once, all relays together (null: the default, 32 unless the database says otherwise).';
comment on column webhooks.webhooks.rate_limit is 'At most this many requests to this webhook per second, all relays together (null: no pacing).';

comment on view webhooks.deliveries is $$
@primaryKey id
@foreignKey (webhook_id) references webhooks.webhooks (id)
@behavior -insert -update -delete
One message to one webhook (one event), with its delivery state. Retries are attempts of the same message.$$;
comment on column webhooks.deliveries.message_id is 'The webhook-id header: the same on every attempt and replay.';
comment on column webhooks.deliveries.payload is 'The body sent, as it was when the event happened.';
comment on column webhooks.deliveries.state is 'pending, in_flight, succeeded or failed.';
comment on column webhooks.deliveries.held_back is
  'True: pending behind an earlier delivery of the same contact (an ordered webhook); it goes once that one has ended, whatever next_attempt_at says.';
comment on column webhooks.deliveries.locked_by is '@behavior -*';
comment on column webhooks.deliveries.locked_until is '@behavior -*';
-- (when a step last served the backfill: the steps' order alone, 35_backfill.sql)
comment on column webhooks.backfills.served_at is '@behavior -*';

comment on table webhooks.delivery_attempts is $$
@unique id
@foreignKey (delivery_id) references webhooks.deliveries (id)
@behavior -insert -update -delete
One HTTP attempt of a delivery.$$;
comment on column webhooks.delivery_attempts.delivery_created_at is '@behavior -*';
-- which relay made an attempt: relay ids name hosts, for operators only
comment on column webhooks.delivery_attempts.relay_id is '@behavior -*';
-- (its URL is delivery_attempts_url: the field url)
comment on column webhooks.delivery_attempts.url_id is '@behavior -*';
comment on function webhooks.delivery_attempts_url(webhooks.delivery_attempts) is $$
@fieldName url
The URL this attempt was sent to: after a change of the webhook's URL, its earlier attempts name the URL they went to. Null for attempts made before 2026-12-07, when attempts did not keep it.$$;
comment on function webhooks.delivery_attempts_succeeded(webhooks.delivery_attempts) is
  'True: the receiver took this attempt (a 2xx, or a 302 or 303, whose Location is not followed); its error is then a note, e.g. "redirect not followed: HTTP 302 to …".';

comment on type webhooks.webhook_report_row is
  'One line of the webhooks report: a webhook and what it did in the date range.';
comment on column webhooks.webhook_report_row.failures_in_a_row is
  'Attempts failed one after the other (0 when the last succeeded, or the webhook is disabled).';
comment on column webhooks.webhook_report_row.failing_since is
  'When the first of the attempts failed in a row was made.';
comment on column webhooks.webhook_report_row.paused_until is
  'While failing: the deliveries wait until then for the next try (the circuit breaker), instead of each retrying on its own.';
comment on column webhooks.webhook_report_row.disables_at is
  'While failing: when the webhook will be disabled unless an attempt succeeds first (webhooks.auto_disable_after after failingSince).';

comment on function webhooks.create_webhook(text, text, text[], webhooks.action[], bigint, bigint, text[], text[], json, integer, integer, interval, boolean, text) is
  'Create a webhook for your company, with how its deliveries go (maxInFlight, rateLimit, coalesceWindow, ordered: left out, the defaults), all or nothing. The response carries its signing secret: store it, it is never shown again. idempotencyKey (1 to 64 letters, digits, - or _; a UUID made once per webhook you mean to make): a Create sent again with it, and the same input, within 24 hours answers the webhook the first made and its secret (unless rotated since) instead of making a second; with other input it is refused (constraint idempotency_key_reused).';
comment on function webhooks.forget_create_requests() is '@behavior -*';
comment on function webhooks.update_webhook(bigint, text, text, text[], webhooks.action[], bigint, bigint, boolean, boolean, text[], text[], json, boolean, integer, integer, boolean, boolean, integer) is
  'Change a webhook. Arguments left out keep their value; clearStatusId / clearUserId / clearConditions remove a filter, an empty ignoreSources / watchFields list empties it; clearMaxInFlight / clearRateLimit go back to the default limit and to no pacing. expectedVersion: the webhook''s version as you read it; if it was changed since, nothing is saved and the call is refused (constraint webhook_changed_since). Left out, the last change wins.';
comment on function webhooks.delete_webhook(bigint) is
  'Delete a webhook and its history: the history leaves every list at once (the database too, unless it is long: then at the next maintenance, within the hour).';
comment on function webhooks.disable_webhook(bigint, text) is
  'Disable a webhook ("Webhook Status: Disabled"), recording who and why.';
comment on function webhooks.enable_webhook(bigint) is
  'Enable a webhook again.';
comment on function webhooks.rotate_webhook_secret(bigint) is
  'Replace the signing secret; returns the new one once. The previous secret stays valid for 24 hours.';
comment on function webhooks.replay_delivery(bigint) is
  'Send a delivery again, as a new attempt of the same message (same webhook-id).';
comment on function webhooks.replay_failed(bigint, timestamptz, integer) is
  'Send again the failed deliveries of a webhook created since the given time, oldest first: at most maxDeliveries (1 to 1,000; 1,000 unless given) a call. A call that returns that many may have left more: call it again.';
comment on function webhooks.webhook_report(timestamptz, timestamptz, bigint, boolean, timestamptz, bigint) is
  'The webhooks report: every webhook of your company with times fired / succeeded / failed for deliveries created in [since, until), newest first; with webhookId, that webhook''s line alone. withCounts false: the webhooks without their counts (null), not counted: each page of the report counts every webhook of the company, so a client that reads several pages asks the counts once, of webhookReportCounts. The next page: afterCreatedAt and afterId, the createdAt and webhookId of the last row shown (both or neither): it reads its own rows, where an `after` cursor (an offset) reads and sorts every webhook of the company for each page.';
comment on function webhooks.webhook_report_counts(timestamptz, timestamptz) is
  'The counts of webhookReport for [since, until), of every webhook of your company at once, counted once: {"<webhookId>": {"fired", "succeeded", "failed", "pending"}}.';
comment on function webhooks.webhooks_history(webhooks.webhooks, timestamptz, timestamptz, text, timestamptz, bigint) is $$
@fieldName history
@behavior +order
The deliveries of this webhook created in [since, until), optionally in one state, newest first. The next page: afterCreatedAt and afterId, the createdAt and id of the last row shown (both or neither): it costs what the first page costs at any depth, as does an `after` cursor, where an `offset` (at most 10,000) reads and throws away every row before the page.$$;
comment on function webhooks.webhooks_history_oldest_first(webhooks.webhooks, timestamptz, timestamptz, text, timestamptz, bigint) is $$
@fieldName historyOldestFirst
@behavior +order
The same deliveries as `history`, oldest first: a history's last pages, read from their own end at the cost of its first; with afterCreatedAt and afterId, the rows newer than that row, nearest first (the page before a page of `history`: after its first row, reversed).$$;
comment on function webhooks.delivery_attempts_latest_first(bigint, integer, bigint) is $$
The HTTP attempts of one delivery, latest first (nothing: not yours, or not there). The next page: afterAttempt and afterId, the attempt and id of the last row shown (both or neither): it costs what the first page costs however many attempts the delivery has, where an `offset` or an `after` cursor (a count of rows; together at most 10,000) reads and throws away every attempt before the page, as deliveryAttemptsByDeliveryId's offset does. How many there are: deliveryAttemptsCount, which counts up to a cap.$$;
comment on function webhooks.delivery_attempts_count(bigint) is $$
How many HTTP attempts one delivery has (0: not yours, or not there), counted up to deliveryAttemptsCountedUpTo (1,000): past it, one more than that, whatever the delivery has ("1,000+"). It reads at most that many attempts (no list of attempts has a totalCount: it read every one).$$;
comment on function webhooks.delivery_attempts_counted_up_to() is $$
The most attempts deliveryAttemptsCount counts: a count one more than this means more.$$;
comment on function webhooks.webhooks_history_count(webhooks.webhooks, timestamptz, timestamptz, text) is $$
@fieldName historyCount
How many deliveries `history` gives for the same since, until and state: from the report's daily counts, so it costs about the same for any number of deliveries (a list of deliveries has no totalCount: it counted them one by one).$$;
comment on function webhooks.webhooks_history_counts(webhooks.webhooks, timestamptz, timestamptz) is $$
@fieldName historyCounts
How many deliveries `history` gives for the same since and until: in all (total) and in each of the states succeeded, failed and pending, each what historyCount gives for it, counted at once (four historyCount fields count the same days four times).$$;
comment on function webhooks.current_company_id() is 'The company of the caller.';
comment on function webhooks.current_actor() is 'Who the caller is (the token subject).';
comment on function webhooks.contact_fields() is 'The contact fields a webhook may send.';
comment on function webhooks.company_statuses() is $$
The status tags of your company (what statusId may name), by name whatever the case, a page at a time: a page reads itself and its offset (at most 10,000), not every status of the company. To find some, companyStatusesMatching.$$;
comment on function webhooks.company_users() is $$
The users of your company (what userId may name), by name whatever the case, a page at a time: a page reads itself and its offset (at most 10,000), not every user of the company. To find some, companyUsersMatching.$$;
comment on function webhooks.company_users_matching(text) is $$
@behavior -connection +list
@fieldName companyUsersMatching
The users of your company whose name or email starts with search (case-insensitive; % and _ are themselves; empty or null: the first ones), by name: at most companyChoicesUpTo, and one more when more match (keep typing). It reads a few dozen users however many the company has.$$;
comment on function webhooks.company_statuses_matching(text) is $$
@behavior -connection +list
@fieldName companyStatusesMatching
The status tags of your company whose name starts with search, as companyUsersMatching: at most companyChoicesUpTo, and one more when more match.$$;
comment on function webhooks.input_bounds() is
  'The most characters each text input takes: {"name": a webhook''s name, "url": its URL, "search": companyUsersMatching''s and companyStatusesMatching''s}. A longer one is refused by name.';
comment on function webhooks.company_choices_up_to() is
  'The most rows companyUsersMatching and companyStatusesMatching show: they answer one more when more match.';
comment on function webhooks.company_users_named(bigint[]) is $$
@behavior -connection +list
@fieldName companyUsersNamed
The users of your company of these ids (at most 1,000; names_asked_max), by id: an id not yours, or not there, has none.$$;
comment on function webhooks.company_statuses_named(bigint[]) is $$
@behavior -connection +list
@fieldName companyStatusesNamed
The status tags of your company of these ids (at most 1,000; names_asked_max), by id: an id not yours, or not there, has none.$$;
comment on function webhooks.current_company_name() is 'The name of the caller''s company.';
comment on function webhooks.retry_schedule(integer) is
  'The delivery retry schedule in force (before ±jitter): when each attempt happens after the first one fails.';

comment on table webhooks.audit_log is $$
@behavior -insert -update -delete
One change to a webhook: who (the token subject, the database role, or "relay"), what, when.$$;
comment on column webhooks.audit_log.actor is '@behavior -*';
comment on function webhooks.audit_log_actor(webhooks.audit_log) is 'Who made the change: the token subject or the database role (its first 200 characters), or "relay" for the relay''s own changes.';
comment on column webhooks.audit_log.action is 'webhook.created, webhook.updated, webhook.deleted, webhook.disabled, webhook.enabled, webhook.secret_rotated, webhook.replayed, webhook.backfill_started, webhook.backfill_cancelled or webhook.test.';
comment on column webhooks.audit_log.details is 'What changed: for webhook.updated {"changed": {field: {"from", "to"}}}; the reason of a disable; the deliveries replayed; the test delivery.';
comment on function webhooks.webhooks_audit_log(webhooks.webhooks) is $$
@fieldName auditLog
The history of changes to this webhook, newest first.$$;
comment on function webhooks.send_test_webhook(bigint) is
  'Send a test: one signed webhook.test delivery with a sample contact of the webhook''s fields. It shows in the history and is not counted in Times Fired.';
comment on function webhooks.sample_contact() is 'The sample contact a test sends (id 0).';

-- in the public schema for DBAs and the API server, not for GraphQL
comment on table webhooks.delivery_history is $$
@behavior -*
The outbox's messages, partitioned by day (22_outbox.sql): read them through webhooks.deliveries.$$;
comment on table webhooks.delivery_results is $$
@behavior -*
How each failed delivery ended (22_outbox.sql): read them through webhooks.deliveries.$$;
comment on table webhooks.delivery_queue is $$
@behavior -*
The deliveries on their way (22_outbox.sql): read them through webhooks.deliveries.$$;
comment on function webhooks.create_partitions(integer) is '@behavior -*';
comment on function webhooks.expired_days() is '@behavior -*';
comment on function webhooks.keep_day_on_its_way(text) is '@behavior -*';
comment on function webhooks.forget_day(date) is '@behavior -*';
comment on function webhooks.detached_history_days() is '@behavior -*';
comment on function webhooks.detached_day_partitions() is '@behavior -*';
comment on function webhooks.held_past_retention() is '@behavior -*';
comment on function webhooks.fail_held_snapshots_past_retention() is '@behavior -*';
comment on function webhooks.outbox_tails() is '@behavior -*';
comment on function webhooks.bound_tail(text, date) is '@behavior -*';
comment on function webhooks.validate_tail(text) is '@behavior -*';
comment on function webhooks.tail_to_span(text) is '@behavior -*';
comment on function webhooks.readmit_detached_tails() is '@behavior -*';
comment on function webhooks.purge_deleted_webhooks(integer) is '@behavior -*';
comment on function webhooks.forget_audit_log(integer) is '@behavior -*';
comment on function webhooks.backlog_by_webhook() is '@behavior -*';
comment on function webhooks.contact_fire_history(bigint, timestamptz, timestamptz) is '@behavior -*';
comment on function webhooks.find_message(text, timestamptz) is '@behavior -*';
comment on view webhooks.daily_counts is $$
@behavior -*
Times fired, succeeded, failed and pending per webhook and UTC day, kept or already dropped by the retention (29_retention.sql).$$;
comment on function webhooks.kept_since() is
  'Where the kept history starts: deliveries created before it were dropped by the retention (their totals remain in the report). Null while nothing was dropped.';
comment on table webhooks.delivery_day_counts is $$
@behavior -*
The report's counts of days long past (50_report_counts.sql): read them through webhooks.webhook_report.$$;
comment on table webhooks.delivery_hour_counts is $$
@behavior -*
The report's counts of the finished hours of recent days (50_report_counts.sql): read them through webhooks.webhook_report.$$;
comment on function webhooks.roll_up_report_counts_after(bigint, integer, date, timestamptz) is '@behavior -*';
comment on procedure webhooks.roll_up_report_counts(integer, integer, integer, timestamptz) is '@behavior -*';
comment on view webhooks.settings is $$
@behavior -*
The engine's settings in force, as set, their defaults, and why a value set was refused (02_settings.sql).$$;

-- backfill (35_backfill.sql)
comment on table webhooks.backfills is $$
@behavior -insert -update -delete
A backfill: every contact of your company (that passes the webhook's conditions) sent to one webhook as a contact.snapshot delivery, paced beside live deliveries.$$;
comment on column webhooks.backfills.state is 'running, done, cancelled or failed.';
comment on column webhooks.backfills.error is 'Why it failed (a failed backfill only): where it stopped, and the SQLSTATE.';
comment on column webhooks.backfills.total is 'Contacts to send: counted by its first steps, 10,000 contacts a step (null until counted); once done, how many were sent.';
comment on column webhooks.backfills.queued is 'Snapshot deliveries written to the outbox so far.';
comment on column webhooks.backfills.position is '@behavior -*';
comment on column webhooks.backfills.created_by is '@behavior -*';
comment on function webhooks.backfills_created_by(webhooks.backfills) is 'Who started it (the token subject, its first 200 characters).';
comment on column webhooks.backfills.finished_at is 'When it finished, was cancelled or failed.';
comment on function webhooks.backfills_unfinished(webhooks.backfills) is $$
@fieldName unfinished
Snapshots queued but not finished yet (pending or being sent): sent so far is queued minus unfinished.$$;
comment on function webhooks.backfills_failed(webhooks.backfills) is $$
@fieldName failed
Snapshots that failed (attempts used up, cancelled, or held past the retention) and were not replayed since: their contacts were not received.$$;
comment on function webhooks.latest_backfills(bigint[]) is
  'The latest backfill of each webhook of your company (none for a webhook never backfilled), or of the webhooks in webhookIds alone: one a webhook, read by an index however many the company has run; what a progress bar asks.';
comment on function webhooks.backfill(bigint) is $$
@name start_backfill
Start a backfill of a webhook: every contact of your company that passes its conditions is sent once, as contact.snapshot with source "backfill". Returns the backfill id.$$;
comment on function webhooks.backfill_contacts_count() is
  'How many contacts a backfill of your company examines now (one of a webhook with conditions sends those of them that pass), counted up to backfillContactsCountedUpTo (10,000): past it, one more than that. It reads no more than that many.';
comment on function webhooks.backfill_contacts_counted_up_to() is
  'The most contacts backfillContactsCount counts: past it, it answers one more than this.';
comment on function webhooks.cancel_backfill(bigint) is
  'Cancel a running backfill: nothing more is queued, and its snapshots not sent yet fail with the reason.';

-- coalescing and ordering (25_capture.sql, 30_delivery.sql)
comment on column webhooks.webhooks.coalesce_window is 'Null: off. Else contact.updated / contact.saved deliveries wait up to this long, and later changes of the same contact merge into them (one message, changed_fields the union, data.merged the count).';
comment on column webhooks.webhooks.ordered is 'True: the deliveries of one contact are sent one at a time, in the order of the changes.';
comment on function webhooks.set_webhook_delivery(bigint, interval, boolean) is
  'Set how the webhook''s deliveries go: coalesceWindow (left out: as it is; null or 0: off; at most 1 hour) and ordered (null or left out: as it is).';
