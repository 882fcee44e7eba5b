-- bpd-webhooks engine: webhook configuration.
--
-- The database refuses bad configuration itself, whoever writes it (GraphQL, psql,
-- a migration script). Each refusal is a check_violation (SQLSTATE 23514) whose
-- CONSTRAINT names the rule and whose COLUMN names the field, so an API can turn it
-- into an error a person can act on.
--
-- Also here: webhooks_private.subscriptions kept equal to "enabled webhooks × their
-- actions" (what capture asks), and webhook_for_update, with which every API
-- function that changes a webhook starts. A webhook's signing secret: 15_secrets.sql.

-- private: raise a named configuration error
create or replace function webhooks_private.config_error(p_rule text, p_column text, p_message text)
returns void
language plpgsql
as $$
begin
  raise exception using
    errcode = 'check_violation',
    message = p_message,
    constraint = p_rule,
    column = p_column,
    table = 'webhooks',
    schema = 'webhooks';
end;
$$;

-- private: a caller's text as a refusal quotes it: its first 100 characters, and …
-- after them. A message that quoted all of it answered a 15 kB field name or a 2 kB
-- URL back whole. The API cuts the texts of its own refusals alike (api/errors.ts
-- QUOTED_MAX; test/api/errors.test.ts holds the two to the same cut).
create or replace function webhooks_private.quoted_part(p_text text)
returns text
language sql
immutable
parallel safe
as $$
  select case when length(p_text) > 100 then left(p_text, 100) || '…' else p_text end;
$$;

-- private: does a URL's host end in a number without being an IPv4 address? The URL
-- standard's host parser reads a host whose last label (a final dot aside) is a
-- number, decimal or 0x hex, as an IPv4 address: one to four parts, each decimal, 0x
-- hex or 0-led octal, all but the last below 256, the last below 256^(5 - parts).
-- Anything else such a host is fails the parse (999999999999, 1.2.3.4.5,
-- receiver.example.123), in the relay as in a browser, and every delivery with it.
-- Percent-escapes are decoded first, as the standard does. (p_host: the authority
-- without its port; tenant text, read by regular expressions only.)
create or replace function webhooks_private.host_is_bad_number(p_host text)
returns boolean
language plpgsql
immutable
as $$
declare
  v_host text := '';
  v_parts text[];
  v_count integer;
  v_part text;
  v_value numeric;
  i integer := 1;
begin
  -- percent-decoded (a byte past ASCII becomes some other letter: no number either way)
  while i <= length(p_host) loop
    if substr(p_host, i, 1) = '%' and substr(p_host, i + 1, 2) ~ '^[0-9A-Fa-f]{2}$' then
      v_host := v_host || chr(('x' || substr(p_host, i + 1, 2))::bit(8)::integer);
      i := i + 3;
    else
      v_host := v_host || substr(p_host, i, 1);
      i := i + 1;
    end if;
  end loop;
  v_parts := string_to_array(lower(v_host), '.');
  v_count := cardinality(v_parts);
  if v_count > 1 and v_parts[v_count] = '' then
    v_count := v_count - 1;
  end if;
  -- the last label a number? (else a name: not this rule's)
  if v_count = 0 or v_parts[v_count] !~ '^([0-9]+|0x[0-9a-f]*)$' then
    return false;
  end if;
  if v_count > 4 then
    return true;
  end if;
  for k in 1 .. v_count loop
    v_part := v_parts[k];
    -- (more digits than any part of an address may have: too large, whatever they are)
    if length(v_part) > 40 then
      return true;
    end if;
    if v_part ~ '^0x[0-9a-f]*$' then
      v_value := 0;
      for j in 3 .. length(v_part) loop
        v_value := v_value * 16 + ('x0' || substr(v_part, j, 1))::bit(8)::integer;
      end loop;
    elsif v_part ~ '^0[0-7]+$' then
      v_value := 0;
      for j in 2 .. length(v_part) loop
        v_value := v_value * 8 + substr(v_part, j, 1)::integer;
      end loop;
    elsif v_part ~ '^(0|[1-9][0-9]*)$' then
      v_value := v_part::numeric;
    else
      return true;
    end if;
    if k < v_count and v_value >= 256 or v_value >= 256 ^ (5 - v_count) then
      return true;
    end if;
  end loop;
  return false;
end;
$$;

-- private: character classes, each as the ranges of a regular expression's bracket
-- (their one statement: the rules below build their patterns from them)

-- every Unicode White_Space character
create or replace function webhooks_private.white_space()
returns text
language sql
immutable
as $$
  select '\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000';
$$;

-- the control characters: C0 (tabs and line breaks among them, escapes), DEL and C1
create or replace function webhooks_private.control_characters()
returns text
language sql
immutable
as $$
  select '\u0001-\u001f\u007f-\u009f';
$$;

-- the line and paragraph separators, U+2028 and U+2029: no control characters, but
-- they end a line as a line feed does
create or replace function webhooks_private.line_separators()
returns text
language sql
immutable
as $$
  select '\u2028\u2029';
$$;

-- the bidi controls (Unicode's Bidi_Control): marks, embeddings, overrides and
-- isolates. In a text shown among others they reorder what follows them, the page's
-- own text included: "Invoice" U+202E "slx.exe" shows as "Invoiceexe.xls". As a
-- regular expression's escapes (\u061c), written as an escape string (E'\\u…'),
-- which reads alike whatever the session's standard_conforming_strings: a plain one
-- read in a session with it off held the characters themselves, and
-- bidi_controls_in_words found none of them (until 2026-12-07;
-- test/sql/filters-config.test.ts).
create or replace function webhooks_private.bidi_controls()
returns text
language sql
immutable
as $$
  select E'\\u061c\\u200e\\u200f\\u202a-\\u202e\\u2066-\\u2069';
$$;

-- the same, in words, for the messages that refuse them: "U+061C, U+200E, …, U+2066
-- to U+2069"
create or replace function webhooks_private.bidi_controls_in_words()
returns text
language sql
immutable
as $$
  -- (escape strings, as bidi_controls(): a plain '\\u' read in a session with
  -- standard_conforming_strings off was no pattern, and the refusal an error of it)
  select regexp_replace(string_agg(coalesce('U+' || upper(m[1]), 'to'), ' ' order by n),
                        E'(U\\+[0-9A-F]+) (?=U)', E'\\1, ', 'g')
  from regexp_matches(webhooks_private.bidi_controls(), E'\\\\u([0-9a-fA-F]{4})|-', 'g') with ordinality t(m, n);
$$;

-- the characters that show nothing of themselves: Unicode's Default_Ignorable_Code_Point
-- (soft hyphen, zero-width spaces and joiners, word joiner, invisible operators,
-- variation selectors, fillers, tags, …) and the blank Braille pattern, U+2800
-- (a character with a glyph, but a blank one)
create or replace function webhooks_private.invisible_characters()
returns text
language sql
immutable
as $$
  select '\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f'
         '\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3\U0001d173-\U0001d17a'
         '\U000e0000-\U000e0fff';
$$;

-- private: does a text a tenant chose, to be shown to people (a webhook's name, a
-- disable reason), hold a bidi control? (p_text: tenant text, read by a regular
-- expression only)
create or replace function webhooks_private.has_bidi_control(p_text text)
returns boolean
language sql
immutable
as $$
  select p_text ~ ('[' || webhooks_private.bidi_controls() || ']');
$$;

-- private: does such a text show nothing: no character but white space, controls and
-- characters that show nothing of themselves? (A name so made looks like no name on
-- the page, or, beside another, like that one.) (p_text: tenant text, read by a
-- regular expression only)
create or replace function webhooks_private.shows_nothing(p_text text)
returns boolean
language sql
immutable
as $$
  select p_text !~ ('[^' || webhooks_private.white_space() || webhooks_private.invisible_characters()
                    || webhooks_private.control_characters() || ']');
$$;

-- private: the characters from DEL on that a URL's IDNA processing refuses in a host
-- name whatever the Unicode version, as ranges of a regular expression's bracket: DEL
-- and the C1 controls, white space (U+00A0 becomes a space), bidi controls,
-- noncharacters and private use. The URL pattern (tg_webhooks__validate, below) and
-- host_is_bad_escape refuse them, written or escaped.
create or replace function webhooks_private.host_refused_unicode()
returns text
language sql
immutable
as $$
  select '\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000' || webhooks_private.bidi_controls()
         || '\ufdd0-\ufdef\ufffe\uffff\ue000-\uf8ff\U000f0000-\U0010ffff';
$$;

-- private: do a URL host's percent-escapes decode to something the URL standard
-- refuses in a host? It decodes them before it reads the host, so an escape may not
-- stand for what may not be written there: a control character, a space, DEL, or one
-- of # % / : < > ? @ [ \ ] ^ | (the forbidden domain code points), nor what its IDNA
-- processing refuses as the URL pattern does (tg_webhooks__validate, below); and the
-- bytes decoded must be UTF-8. (p_host: the authority without its port; tenant text, read
-- by regular expressions and decode() only.)
create or replace function webhooks_private.host_is_bad_escape(p_host text)
returns boolean
language plpgsql
immutable
as $$
declare
  v_bytes bytea := '';
  i integer := 1;
begin
  if p_host is null or strpos(p_host, '%') = 0 then
    return false;
  end if;
  while i <= length(p_host) loop
    if substr(p_host, i, 1) = '%' and substr(p_host, i + 1, 2) ~ '^[0-9A-Fa-f]{2}$' then
      v_bytes := v_bytes || decode(substr(p_host, i + 1, 2), 'hex');
      i := i + 3;
    else
      v_bytes := v_bytes || convert_to(substr(p_host, i, 1), 'UTF8');
      i := i + 1;
    end if;
  end loop;
  -- (convert_from refuses bytes that are no UTF-8, and NUL; an escape string, which
  -- reads alike whatever the session's standard_conforming_strings: 15_filters.sql)
  return convert_from(v_bytes, 'UTF8')
         ~ (E'[\\u0001-\\u0020#%/:<>?@\\[\\\\\\]^|' || webhooks_private.host_refused_unicode() || ']');
exception when others then
  return true;
end;
$$;

-- private: is the text between a URL's brackets an IPv6 address, as the URL standard's
-- IPv6 parser reads one? Postgres's inet reads the same forms, but for an IPv4 address
-- (no colon) and an embedded IPv4 address of fewer than four parts (::1.2.3), which
-- the standard refuses, as it does a part with a leading zero (::01.2.3.4). Only
-- configuration calls it: it may try the cast. (p_text: tenant text, read by a
-- regular expression and the inet type's input function only.)
create or replace function webhooks_private.is_ipv6_address(p_text text)
returns boolean
language plpgsql
immutable
as $$
begin
  if p_text is null or p_text !~ ':'
     or (p_text ~ '[.]' and p_text !~ ':(0|[1-9][0-9]{0,2})([.](0|[1-9][0-9]{0,2})){3}$') then
    return false;
  end if;
  return family(p_text::inet) = 6 and masklen(p_text::inet) = 128;
exception when others then
  return false;
end;
$$;

-- private: the most webhooks one company may have, disabled ones included: the
-- setting webhooks.max_webhooks_per_company (02_settings.sql: 100 unless changed). A
-- company needs a handful (one per receiving service, or per status tag); each
-- webhook is a lane every claim may visit and a subscription every contact write of
-- its company asks about, so thousands of them would be one tenant's cost to all.
-- (Stripe allows 16 endpoints per account, GitHub 20 webhooks per event per
-- repository.)
create or replace function webhooks_private.max_webhooks_per_company()
returns integer
language sql
stable
as $$
  select webhooks_private.integer_setting('webhooks.max_webhooks_per_company');
$$;

-- public: the contact columns a webhook may choose in `fields` (GraphQL:
-- contactFields); the validation below asks the same function. As its owner: naming
-- crm.contacts needs a right on schema crm, which no API role has.
drop function if exists webhooks_private.contact_fields();
create or replace function webhooks.contact_fields()
returns text[]
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select array_agg(attname::text order by attnum)
  from pg_catalog.pg_attribute
  where attrelid = 'crm.contacts'::regclass and attnum > 0 and not attisdropped;
$$;

-- private: raises the not-found error of a thing the caller named by id: "webhook 42
-- not found", "(no id given)" for a null id, constraint '<kind>_not_found' and the
-- argument p_column. The one wording of every function that looks a thing up for its
-- caller (webhook_for_update, below; replay_delivery, cancel_backfill,
-- send_test_webhook); under row-level security "not yours" and "does not exist" meet
-- here and read alike.
create or replace function webhooks_private.raise_not_found(p_kind text, p_id bigint, p_column text default 'id')
returns void
language plpgsql
as $$
begin
  raise exception using
    errcode = 'no_data_found',
    message = format('%s %s not found', p_kind, coalesce(p_id::text, '(no id given)')),
    constraint = p_kind || '_not_found',
    column = p_column;
end;
$$;

-- private: the caller's webhook p_id, locked, or a not-found error. Run as the caller,
-- so row-level security applies: a webhook of another company is invisible, and "not
-- yours" and "does not exist" give the same error and reveal nothing. API functions
-- (45_admin.sql, 15_secrets.sql, 30_delivery.sql) start with it. p_column is the
-- argument the caller named the webhook by, which the error names. Locked FOR NO KEY
-- UPDATE: requests on one webhook queue behind each other, and its delete (FOR UPDATE,
-- delete_webhook) waits for them, but a row written elsewhere with a key to the
-- webhook does not: the roll-up's day counts, beside a replay of the webhook that
-- waits for a row of the roll-up's, was a deadlock, one of the two failed (FOR UPDATE,
-- until 2026-12-07; test/sql/roll-up-isolation.test.ts).
drop function if exists webhooks.webhook_for_update(bigint);
drop function if exists webhooks_private.webhook_for_update(bigint);
create or replace function webhooks_private.webhook_for_update(p_id bigint, p_column text default 'id')
returns webhooks.webhooks
language plpgsql
as $$
declare
  v webhooks.webhooks;
begin
  select * into v from webhooks.webhooks where id = p_id for no key update;
  if not found then
    perform webhooks_private.raise_not_found('webhook', p_id, p_column);
  end if;
  return v;
end;
$$;

-- private: the filter column a webhook's deleted_filter_target names: 'user_id' for
-- "user 42 (Jane Doe)", 'status_id' for "status 7 (…)" (disable_filtered_on, below,
-- writes the kind as its first word). Read by the refusal to enable such a webhook and
-- by update_webhook's clear_user_id / clear_status_id (45_admin.sql).
create or replace function webhooks_private.deleted_filter_column(p_mark text)
returns text
language sql
immutable
as $$
  select case when p_mark like 'user %' then 'user_id' when p_mark like 'status %' then 'status_id' end;
$$;

-- private: the longest coalesce window a webhook may have (the CHECK
-- webhooks_coalesce_window_range of webhooks.webhooks, migration 0014_coalesce_ordered,
-- and the check below that names it). It is also the longest a delivery's payload may be newer than
-- its message: a change merged into an update still waiting out its window
-- (merge_into_waiting, 25_capture.sql) takes the payload's "timestamp" with it, which
-- webhooks.find_message (40_history.sql) counts on.
create or replace function webhooks_private.max_coalesce_window()
returns interval
language sql
immutable
as $$
  select interval '1 hour';
$$;

-- private: the longest webhook name and URL, in characters: the rules below, and the
-- setup form's boxes, which take no more (webhooks.input_bounds, 55_report.sql)
create or replace function webhooks_private.webhook_name_max()
returns integer
language sql
immutable
as $$
  select 200;
$$;

create or replace function webhooks_private.webhook_url_max()
returns integer
language sql
immutable
as $$
  select 2048;
$$;

-- private: what is wrong with a URL the rule of tg_webhooks__validate refuses, as its
-- refusal's message. The message is the caller's answer and a line of the database
-- server's log (and the API's), so it names what is wrong and quotes at most the scheme
-- or the host: the URL's first 100 characters were quoted until 2026-12-07, and a token
-- in its path or query with them (test/sql/config.test.ts). In the order an admin would
-- mend them; the last is for what the rule refuses that none of the others names.
create or replace function webhooks_private.url_refusal(p_url text, p_max integer)
returns text
language plpgsql
immutable
as $$
declare
  v_authority text;
  v_host text;
begin
  if p_url is null then
    return 'webhook url must be an absolute http:// or https:// URL';
  elsif length(p_url) > p_max then
    return format('webhook url must be at most %s characters, got %s', p_max, length(p_url));
  elsif p_url !~* '^https?://' then
    -- a scheme alone is quoted, and only one that looks like one (a token pasted in
    -- place of the URL is not)
    return 'webhook url must start with http:// or https://'
           || coalesce(', got ' || quote_literal(substring(p_url from '^([A-Za-z][A-Za-z0-9+.-]{0,19}://)')), '');
  elsif p_url ~ E'\\s' then
    return 'webhook url must not contain white space (write it percent-encoded: %20)';
  end if;
  v_authority := substring(p_url from '^[A-Za-z]+://([^/?#]*)');
  if v_authority = '' or v_authority ~ '^:' then
    return format('webhook url must have a host after %s', substring(p_url from '^([A-Za-z]+://)'));
  end if;
  if v_authority !~ '^[[]' then
    v_host := substring(v_authority from '^([^:]*)');
    if v_host !~* (E'^([^][\\s/?#@:<>\\\\^|%\\u0001-\\u001f' || webhooks_private.host_refused_unicode() || E']|%[0-9a-f]{2})+$') then
      return format(E'webhook url host must be a name or an IPv6 address in brackets, without a character the URL standard forbids in a host (a control character, white space, # %% / : < > ? @ [ \\ ] ^ |, %% but as %%XX) or one its IDNA processing refuses (C1 and bidi controls, noncharacters, private use), got %L',
                    webhooks_private.quoted_part(v_host));
    elsif substring(v_authority from length(v_host) + 1) !~ '^(:[0-9]*)?$' then
      return 'webhook url port must be digits';
    end if;
  end if;
  return 'webhook url must be an absolute http:// or https:// URL whose authority is a host and an optional port';
end;
$$;

create or replace function webhooks_private.tg_webhooks__validate()
returns trigger
language plpgsql
as $$
declare
  v_unknown text;
  v_port text;
  v_status_actions constant webhooks.action[] := '{contact.status_added,contact.status_removed}';
  -- every Unicode White_Space character
  v_space constant text := '[' || webhooks_private.white_space() || ']';
  v_name_max constant integer := webhooks_private.webhook_name_max();
  v_url_max constant integer := webhooks_private.webhook_url_max();
  v_reason_max constant integer := 500;
  v_webhooks_max integer;
  v_webhooks integer;
begin
  if tg_op = 'UPDATE' and new.company_id <> old.company_id then
    perform webhooks_private.config_error('webhook_company_immutable', 'company_id',
      'a webhook cannot move to another company; create a new one instead');
  end if;
  if tg_op = 'INSERT' then
    -- one creation at a time per company, so that two cannot both see room for one
    -- (the count's snapshot is taken after the lock: a statement of its own)
    perform pg_advisory_xact_lock(webhooks_private.company_webhooks_lock(new.company_id));
    v_webhooks_max := webhooks_private.max_webhooks_per_company();
    select count(*) into v_webhooks from webhooks.webhooks w where w.company_id = new.company_id;
    if v_webhooks >= v_webhooks_max then
      perform webhooks_private.config_error('webhook_limit_reached', 'company_id',
        format('a company may have at most %s webhooks (webhooks.max_webhooks_per_company), and company %s has %s: delete one first',
               v_webhooks_max, new.company_id, v_webhooks));
    end if;
  end if;

  -- a name: checked when it is written (a webhook stored before a rule was added is
  -- still disabled, by an admin or by the relay, and changed otherwise). It is trimmed
  -- of every Unicode white space character (btrim knows the ASCII space only, and a
  -- regex's \s depends on the locale), then must be something
  if tg_op = 'INSERT' or new.name is distinct from old.name then
    new.name := regexp_replace(new.name, format('^%s+|%s+$', v_space, v_space), '', 'g');
    if new.name is null or new.name = '' then
      perform webhooks_private.config_error('webhook_name_required', 'name', 'webhook name must not be empty or white space only');
    end if;
    -- control characters (C0, DEL, C1) and line separators: a name is shown in pages,
    -- logs and terminals, on one line
    if new.name ~ ('[' || webhooks_private.control_characters() || webhooks_private.line_separators() || ']') then
      perform webhooks_private.config_error('webhook_name_control_characters', 'name',
        'webhook name must not contain control characters (tabs, line breaks, escapes, …) nor line or paragraph separators (U+2028, U+2029)');
    end if;
    -- and on the Reports page, among other webhooks' names: nothing that reorders the
    -- text around it, and something that shows
    if webhooks_private.has_bidi_control(new.name) then
      perform webhooks_private.config_error('webhook_name_bidi_controls', 'name',
        format('webhook name must not contain bidi controls (%s): they reorder the text shown around them',
               webhooks_private.bidi_controls_in_words()));
    end if;
    if webhooks_private.shows_nothing(new.name) then
      perform webhooks_private.config_error('webhook_name_invisible', 'name',
        'webhook name must have a character that shows: zero-width and other invisible characters alone look like no name');
    end if;
    if char_length(new.name) > v_name_max then
      perform webhooks_private.config_error('webhook_name_too_long', 'name',
        format('webhook name must be at most %s characters, got %s', v_name_max, char_length(new.name)));
    end if;
  end if;

  -- The URL's rules, checked when a URL is written (as a name's are): a webhook whose
  -- URL was stored before a rule, which the relay can never send to, could not be
  -- disabled, by an admin or by the relay, nor changed otherwise (until 2026-12-05;
  -- test/sql/config.test.ts).
  if tg_op = 'INSERT' or new.url is distinct from old.url then
    -- no bidi control anywhere in it: the path, query and fragment may hold any character
    -- but white space, and the Reports page shows the URL as written ("/" U+202E
    -- "gnp.exe" shows as "/exe.png"); the URL standard sends them percent-encoded, which
    -- is how they may be written.
    if webhooks_private.has_bidi_control(new.url) then
      perform webhooks_private.config_error('webhook_url_invalid', 'url',
        format('webhook url must not contain bidi controls (%s); write them percent-encoded (%%E2%%80%%AE)',
               webhooks_private.bidi_controls_in_words()));
    end if;
    -- a user or password before the host (user:password@, a token@), which the pattern
    -- below refuses as no host, is named here and not quoted: the refusal is the
    -- caller's answer and a line of the database server's log, where credentials do not
    -- belong (until 2026-12-07 the URL was quoted whole; test/sql/config.test.ts). Nor is
    -- any other part of the URL but its host (url_refusal)
    if new.url ~ '^[A-Za-z]+://[^/?#]*@' then
      perform webhooks_private.config_error('webhook_url_invalid', 'url',
        format('webhook url must not hold a user or password before its host (the relay sends none: a receiver verifies the webhook''s signature), host %L',
               webhooks_private.quoted_part(substring(new.url from E'^[A-Za-z]+://[^/?#]*@(\\[[^]/?#]*\\]?|[^/?#:]*)'))));
    end if;
    -- the authority is a host (a name, or an IPv6 address in brackets) and an optional
    -- port, nothing else: no user, and none of the characters the URL standard forbids in
    -- a host (and which the relay's parser refuses, failing every delivery), a percent
    -- sign only to encode a byte; nor a character its IDNA processing refuses in a name
    -- whatever the Unicode version: white space (U+00A0 becomes a space), C1 controls,
    -- bidi controls, noncharacters, private use. (A name IDNA refuses for another
    -- reason, such as unassigned code points or bad punycode, is not caught here.)
    -- (The patterns of these checks are escape strings or hold no backslash: a plain
    -- literal's backslash is read by the session's standard_conforming_strings, and a
    -- DBA's session with it off refused every URL: 15_filters.sql.)
    if new.url is null
       or new.url !~* (E'^https?://(\\[[0-9a-f:.]+\\]|([^][\\s/?#@:<>\\\\^|%\\u0001-\\u001f' || webhooks_private.host_refused_unicode()
                        || E']|%[0-9a-f]{2})+)(:[0-9]*)?([/?#]\\S*)?$')
       or length(new.url) > v_url_max then
      perform webhooks_private.config_error('webhook_url_invalid', 'url', webhooks_private.url_refusal(new.url, v_url_max));
    end if;
    -- an IPv6 literal: brackets that hold an address ([:::::] and [1.2.3.4] fit the
    -- pattern above, and the relay's parser refuses them)
    if new.url ~ '^[A-Za-z]+://[[]' and not webhooks_private.is_ipv6_address(substring(new.url from '^[A-Za-z]+://[[]([^]]*)[]]')) then
      perform webhooks_private.config_error('webhook_url_invalid', 'url',
        format('webhook url host is in brackets but is no IPv6 address, got %L',
               webhooks_private.quoted_part(substring(new.url from '^[A-Za-z]+://([[][^]]*[]]?)'))));
    end if;
    if webhooks_private.host_is_bad_escape(substring(new.url from '^[A-Za-z]+://([^/?#:[]*)')) then
      perform webhooks_private.config_error('webhook_url_invalid', 'url',
        format(E'webhook url host has percent-escapes of characters a host may not hold (a control character, a space, # %% / : < > ? @ [ \\ ] ^ |) or of bytes that are no UTF-8, got %L',
               webhooks_private.quoted_part(substring(new.url from '^[A-Za-z]+://([^/?#:[]*)'))));
    end if;
    if webhooks_private.host_is_bad_number(substring(new.url from '^[A-Za-z]+://([^/?#:[]*)')) then
      perform webhooks_private.config_error('webhook_url_invalid', 'url',
        format('webhook url host ends in a number but is no IPv4 address (at most four parts, each below 256, the last below 256^(5 - parts)), got %L',
               webhooks_private.quoted_part(substring(new.url from '^[A-Za-z]+://([^/?#:[]*)'))));
    end if;
    -- the port, if any: after the host or after an IPv6 literal's closing bracket
    v_port := substring(substring(new.url from '^[A-Za-z]+://([^/?#]*)') from ':([0-9]+)$');
    if v_port is not null and v_port::numeric not between 1 and 65535 then
      perform webhooks_private.config_error('webhook_url_port_invalid', 'url',
        format('webhook url port must be from 1 to 65535, got %s', left(v_port, 30)));
    end if;
  end if;

  -- a disable reason (disableWebhook's, tenant text, shown on the Reports page):
  -- checked when it is written; one that shows nothing is none
  if tg_op = 'INSERT' or new.disabled_reason is distinct from old.disabled_reason then
    new.disabled_reason := nullif(regexp_replace(new.disabled_reason, format('^%s+|%s+$', v_space, v_space), '', 'g'), '');
    if new.disabled_reason ~ '[\u0001-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]' then
      perform webhooks_private.config_error('webhook_disabled_reason_control_characters', 'disabled_reason',
        'a disable reason must not contain control characters other than tabs and line breaks');
    end if;
    if webhooks_private.has_bidi_control(new.disabled_reason) then
      perform webhooks_private.config_error('webhook_disabled_reason_bidi_controls', 'disabled_reason',
        format('a disable reason must not contain bidi controls (%s): they reorder the text shown around them',
               webhooks_private.bidi_controls_in_words()));
    end if;
    if webhooks_private.shows_nothing(new.disabled_reason) then
      new.disabled_reason := null;
    end if;
    if char_length(new.disabled_reason) > v_reason_max then
      perform webhooks_private.config_error('webhook_disabled_reason_too_long', 'disabled_reason',
        format('a disable reason must be at most %s characters, got %s', v_reason_max, char_length(new.disabled_reason)));
    end if;
  end if;

  -- a webhook whose filter the CRM deleted (below) is enabled again only once its admin
  -- has chosen: another user or status, or none on purpose (update_webhook's clear_*)
  if tg_op = 'UPDATE' and (new.user_id, new.status_id) is distinct from (old.user_id, old.status_id)
     and new.deleted_filter_target is not distinct from old.deleted_filter_target then
    new.deleted_filter_target := null;
  end if;
  if new.enabled and new.deleted_filter_target is not null then
    perform webhooks_private.config_error('webhook_filter_target_deleted',
      webhooks_private.deleted_filter_column(new.deleted_filter_target),
      format('this webhook was filtered on %s, which the CRM deleted: choose another, or none to fire for every one, before enabling it',
             new.deleted_filter_target));
  end if;

  -- enabling or disabling in plain SQL (a DBA's update) records when and who, as
  -- disable_webhook does; enabling clears them. Values the writer gives are kept.
  if tg_op = 'INSERT' and not new.enabled
     or tg_op = 'UPDATE' and new.enabled is distinct from old.enabled then
    if new.enabled then
      new.disabled_at := null;
      new.disabled_by := null;
      new.disabled_reason := null;
    else
      new.disabled_at := coalesce(new.disabled_at, now());
      -- (this trigger runs as its owner: the caller's role is the session's `role`
      -- setting, else its login; the token subject first, as webhooks.current_actor)
      new.disabled_by := coalesce(new.disabled_by,
                                  nullif(current_setting('jwt.claims.sub', true), ''),
                                  nullif(current_setting('role'), 'none'),
                                  session_user::text);
    end if;
  end if;

  -- The rules below, as a name's and a URL's, are checked when what they judge is
  -- written: a webhook whose field the CRM has dropped since, or whose user has moved to
  -- another company, could not be disabled, by an admin or by the relay, nor changed
  -- otherwise (until 2026-12-05; test/sql/config.test.ts).
  if tg_op = 'INSERT' or new.fields is distinct from old.fields then
    if coalesce(cardinality(new.fields), 0) = 0 then
      perform webhooks_private.config_error('webhook_fields_empty', 'fields',
        'webhook fields must list at least one contact field');
    end if;
    select f into v_unknown
    from unnest(new.fields) f
    where f is null or f <> all (webhooks.contact_fields())
    limit 1;
    if found then
      perform webhooks_private.config_error('webhook_field_unknown', 'fields',
        format('unknown contact field %L; known fields: %s', webhooks_private.quoted_part(v_unknown), array_to_string(webhooks.contact_fields(), ', ')));
    end if;
    -- keep the first occurrence of each field, in the order given
    new.fields := array(select f from unnest(new.fields) with ordinality t(f, n) group by f order by min(n));
  end if;

  if tg_op = 'INSERT' or new.actions is distinct from old.actions then
    if coalesce(cardinality(new.actions), 0) = 0 or array_position(new.actions, null) is not null then
      perform webhooks_private.config_error('webhook_actions_empty', 'actions',
        'webhook actions must list at least one action');
    end if;
    new.actions := array(select a from unnest(new.actions) with ordinality t(a, n) group by a order by min(n));
    -- a snapshot is what a backfill sends (35_backfill.sql), never a change to hear
    if 'contact.snapshot' = any (new.actions) then
      perform webhooks_private.config_error('webhook_action_snapshot', 'actions',
        'contact.snapshot is sent by a backfill (backfill), whatever the actions: it cannot be subscribed to');
    end if;
  end if;

  -- A filter applies to every action of its webhook, so it may only sit on a
  -- webhook whose actions all understand it.
  if new.status_id is not null
     and (tg_op = 'INSERT' or (new.status_id, new.actions) is distinct from (old.status_id, old.actions)) then
    if not (new.actions <@ v_status_actions) then
      perform webhooks_private.config_error('webhook_status_needs_status_actions', 'status_id',
        'status_id filters status actions only: a webhook with status_id may subscribe only to contact.status_added and contact.status_removed');
    end if;
    if not exists (select 1 from crm.statuses s where s.id = new.status_id and s.company_id = new.company_id) then
      perform webhooks_private.config_error('webhook_status_other_company', 'status_id',
        format('status %s is not a status of company %s', new.status_id, new.company_id));
    end if;
  end if;

  if new.user_id is not null
     and (tg_op = 'INSERT' or (new.user_id, new.actions) is distinct from (old.user_id, old.actions)) then
    if new.actions <> '{contact.user_assigned}'::webhooks.action[] then
      perform webhooks_private.config_error('webhook_user_needs_user_assigned', 'user_id',
        'user_id filters contact.user_assigned only: a webhook with user_id may subscribe only to that action');
    end if;
    if not exists (select 1 from crm.users u where u.id = new.user_id and u.company_id = new.company_id) then
      perform webhooks_private.config_error('webhook_user_other_company', 'user_id',
        format('user %s is not a user of company %s', new.user_id, new.company_id));
    end if;
  end if;

  -- a coalesce window waits from the change on: months and days, which last as long as
  -- the month or day they start in, are taken as the range check takes them (30 days,
  -- 24 hours), so what waits is what was checked (1 month - 29 days - 23 hours was an
  -- hour to the check, and 25 hours from a day of December)
  new.coalesce_window := justify_interval(new.coalesce_window);
  -- the table's check (webhooks_coalesce_window_range), with its column and range
  -- said: the check alone named neither
  if (tg_op = 'INSERT' or new.coalesce_window is distinct from old.coalesce_window)
     and (new.coalesce_window <= interval '0' or new.coalesce_window > webhooks_private.max_coalesce_window()) then
    perform webhooks_private.config_error('webhooks_coalesce_window_range', 'coalesce_window',
      format('coalesce_window must be more than 0 and at most 1 hour (or null: off), got %s', new.coalesce_window));
  end if;

  -- fleet-wide limits (sql/28_lanes.sql)
  if new.max_in_flight is not null and new.max_in_flight not between 1 and 1000 then
    perform webhooks_private.config_error('webhook_max_in_flight_range', 'max_in_flight',
      format('max_in_flight must be from 1 to 1000 requests at once (or null for the default), got %s', new.max_in_flight));
  end if;
  if new.rate_limit is not null and new.rate_limit not between 1 and 10000 then
    perform webhooks_private.config_error('webhook_rate_limit_range', 'rate_limit',
      format('rate_limit must be from 1 to 10000 requests per second (or null for none), got %s', new.rate_limit));
  end if;

  return new;
end;
$$;

-- BEFORE UPDATE, the last: an update that leaves the webhook as it was, once it is
-- validated and tidied (a name trimmed, fields deduplicated, filters stored tidy,
-- 15_filters.sql), changes nothing: no row is written, so no AFTER trigger runs (no
-- audit row, no change of the company's hour spent, no notice to the relays, no
-- subscription rewritten), and the statement counts no row. Else updated_at says
-- when, and version (0100_webhook_version) counts one more change of what an editor
-- shows and its Save writes: update_webhook's expected_version (45_admin.sql) compares
-- it with the one the editor read. Those are the settings of the setup form (page/app.js)
-- and a filter whose user or status the CRM deleted (deleted_filter_target: the form
-- asks for another). A Disable or Enable, the relay's disable of a failing endpoint and
-- a rotation of the secret are not: the form neither shows nor sends them, and a Save
-- over them was refused (webhook_changed_since) until 2026-12-07. (A no-op updated the
-- row and wrote no audit row: it was no change of webhooks.max_changes_per_hour, and a
-- loop of them was unbounded.) The API functions that change a webhook answer it as it
-- is then (45_admin.sql).
create or replace function webhooks_private.tg_webhooks__skip_unchanged()
returns trigger
language plpgsql
as $$
begin
  new.updated_at := old.updated_at;
  new.version := old.version;
  if new is not distinct from old then
    return null;
  end if;
  new.updated_at := now();
  if (new.name, new.url, new.fields, new.actions, new.status_id, new.user_id, new.ignore_sources, new.watch_fields,
      new.conditions, new.max_in_flight, new.rate_limit, new.coalesce_window, new.ordered, new.deleted_filter_target)
     is distinct from
     (old.name, old.url, old.fields, old.actions, old.status_id, old.user_id, old.ignore_sources, old.watch_fields,
      old.conditions, old.max_in_flight, old.rate_limit, old.coalesce_window, old.ordered, old.deleted_filter_target) then
    new.version := old.version + 1;
  end if;
  return new;
end;
$$;

-- private: the contact columns a payload leaves out, for a webhook sending p_fields
-- (every payload carries the contact's id). The columns of this moment: capture
-- checks each payload against payload_keys too, for columns added since.
create or replace function webhooks_private.payload_omit(p_fields text[])
returns text[]
language sql
stable
as $$
  select coalesce(array_agg(f), '{}') from unnest(webhooks.contact_fields()) f
  where f <> 'id' and f <> all (p_fields);
$$;

-- private: the keys a payload's contact may hold, for a webhook sending p_fields: the
-- id and the chosen fields, nothing else, whatever columns crm.contacts has
create or replace function webhooks_private.payload_keys(p_fields text[])
returns text[]
language sql
immutable
as $$
  select '{id}' || array_remove(p_fields, 'id');
$$;

-- Keep webhooks_private.subscriptions equal to "enabled webhooks × their actions",
-- each row with what capture needs of its webhook (filters, payload_omit, payload_keys,
-- coalesce_window).
create or replace function webhooks_private.tg_webhooks__sync_subscriptions()
returns trigger
language plpgsql
as $$
begin
  if tg_op = 'UPDATE'
     and (new.enabled, new.actions, new.fields, new.status_id, new.user_id,
          new.ignore_sources, new.watch_fields, new.conditions, new.coalesce_window)
         is not distinct from
         (old.enabled, old.actions, old.fields, old.status_id, old.user_id,
          old.ignore_sources, old.watch_fields, old.conditions, old.coalesce_window) then
    return null;
  end if;
  if tg_op = 'UPDATE' then
    delete from webhooks_private.subscriptions where webhook_id = old.id;
  end if;
  if new.enabled then
    insert into webhooks_private.subscriptions
      (action, company_id, webhook_id, status_id, user_id, payload_omit, payload_keys,
       ignore_sources, watch_fields, conditions, coalesce_window)
    select a, new.company_id, new.id, new.status_id, new.user_id, webhooks_private.payload_omit(new.fields),
           webhooks_private.payload_keys(new.fields), new.ignore_sources, new.watch_fields, new.conditions,
           new.coalesce_window
    from unnest(new.actions) a
    on conflict do nothing;
  end if;
  return null;
end;
$$;

-- Triggers run in name order; the numeric prefix states that order.
drop trigger if exists _100_validate on webhooks.webhooks;
create trigger _100_validate
  before insert or update on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__validate();

drop trigger if exists _900_skip_unchanged on webhooks.webhooks;
create trigger _900_skip_unchanged
  before update on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__skip_unchanged();

drop trigger if exists _500_sync_subscriptions on webhooks.webhooks;
create trigger _500_sync_subscriptions
  after insert or update on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__sync_subscriptions();
-- (a deleted webhook's subscriptions go with it: ON DELETE CASCADE)

-- Each URL a webhook has had, once (webhooks_private.webhook_urls, migration 0108):
-- the settle names an attempt's URL by its id (webhooks.delivery_attempts.url_id,
-- sql/30_delivery.sql), so that the history still tells the old URL's attempts after
-- a change. A URL had again keeps its id. (A deleted webhook's go with it: ON DELETE
-- CASCADE.)
create or replace function webhooks_private.tg_webhooks__keep_url()
returns trigger
language plpgsql
as $$
begin
  if tg_op = 'INSERT' or new.url is distinct from old.url then
    insert into webhooks_private.webhook_urls (webhook_id, company_id, url)
    values (new.id, new.company_id, new.url)
    on conflict do nothing;
  end if;
  return null;
end;
$$;

drop trigger if exists _500_keep_url on webhooks.webhooks;
create trigger _500_keep_url
  after insert or update of url on webhooks.webhooks
  for each row execute function webhooks_private.tg_webhooks__keep_url();

------------------------------------------------------------------------------------
-- When the CRM deletes a user or a status tag a webhook is filtered on
--
-- The webhook stays, with its history and Times Fired: it is disabled, by 'crm', with
-- a reason that names what went, and its filter is cleared (the key refuses a dangling
-- one: migration 0038). Such a webhook could never fire again as it was: the user's
-- assignments and the status's tags go with them. Without a filter it would fire for
-- every user or status, so deleted_filter_target keeps it disabled until its admin
-- chooses another, or none on purpose (the validation trigger, above; migration 0039).
-- Until 2026-12-06 the keys cascaded, and the webhook was deleted with every firing
-- it had recorded (test/sql/filter-targets.test.ts).

-- private: tenant or CRM text quoted in a disable reason, within what a reason may
-- hold (tg_webhooks__validate, above): control characters and bidi controls made
-- spaces, trimmed, at most p_max characters
create or replace function webhooks_private.quoted_in_reason(p_text text, p_max integer)
returns text
language sql
immutable
as $$
  select left(btrim(regexp_replace(p_text, '[' || webhooks_private.control_characters() || webhooks_private.bidi_controls() || ']',
                                   ' ', 'g')), p_max);
$$;

-- private: disable the webhooks filtered on a deleted user or status (p_column names
-- the filter, p_row is the deleted row as JSON: its name read from it, as capture
-- reads a user's, so that a CRM that renames the column fails no delete)
create or replace function webhooks_private.disable_filtered_on(p_column text, p_row jsonb)
returns void
language plpgsql
as $$
declare
  v_id constant bigint := (p_row ->> 'id')::bigint;
  v_what constant text := case p_column when 'user_id' then 'user' else 'status' end;
  -- ("user 42 (Jane Doe)": update_webhook, 45_admin.sql, reads the kind from its first word)
  v_target constant text := format('%s %s', v_what, v_id)
    || coalesce(format(' (%s)', nullif(webhooks_private.quoted_in_reason(p_row ->> 'name', 100), '')), '');
  v_reason constant text := format(
    'The %1$s it was filtered on, %2$s, was deleted from the CRM. Choose another %1$s, or any %1$s, to enable it again.',
    v_what, v_target);
begin
  -- (p_column is one of the two the triggers below name, never a tenant's text)
  execute format(
    $u$update webhooks.webhooks w
       set %1$I = null, enabled = false, disabled_at = coalesce(w.disabled_at, now()),
           disabled_by = coalesce(w.disabled_by, 'crm'), disabled_reason = $2, deleted_filter_target = $3
       where w.%1$I = $1$u$, p_column)
  using v_id, v_reason, v_target;
end;
$$;

-- (the trigger names the filter's column: user_id on crm.users, status_id on crm.statuses)
create or replace function webhooks_private.tg_filter_target__deleted()
returns trigger
language plpgsql
as $$
begin
  perform webhooks_private.disable_filtered_on(tg_argv[0], to_jsonb(old));
  return null;
end;
$$;

-- AFTER: only a row the delete removed counts (a CRM trigger may cancel it). Named
-- "!…" to fire before the key's own check of the same row ("RI_ConstraintTrigger_a_…",
-- which sorts after), as the contacts' delete trigger does (25_capture.sql).
create or replace trigger "!webhooks_user_deleted"
  after delete on crm.users
  for each row execute function webhooks_private.tg_filter_target__deleted('user_id');

create or replace trigger "!webhooks_status_deleted"
  after delete on crm.statuses
  for each row execute function webhooks_private.tg_filter_target__deleted('status_id');
-- (a trigger function of each table, for a few hours of 2026-12-06)
drop function if exists webhooks_private.tg_users__disable_webhooks();
drop function if exists webhooks_private.tg_statuses__disable_webhooks();
