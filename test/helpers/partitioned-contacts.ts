// crm.contacts partitioned by created_at as a CRM at scale would do it: a new
// partitioned table with one partition of the rows so far, the rows copied, the names
// swapped, the old table dropped, then the engine applied again, as a CRM release
// would. Partitions made after that are each test file's own.
import { migrate } from '../../tools/migrate.ts';
import type { TestDatabase } from './db.ts';

/** Partitions crm.contacts, its one partition `crm.<first>` holding every created_at before `until`, and migrates. */
export async function partitionContacts(database: TestDatabase, first: string, until: string): Promise<void> {
  await database.pool.query(`
    begin;
    create table crm.contacts_partitioned (like crm.contacts including defaults including identity) partition by range (created_at);
    alter table crm.contacts_partitioned add primary key (id, created_at);
    create table crm.${first} partition of crm.contacts_partitioned for values from (minvalue) to ('${until}');
    insert into crm.contacts_partitioned overriding system value select * from crm.contacts;
    alter table crm.contacts rename to contacts_unpartitioned;
    alter table crm.contacts_partitioned rename to contacts;
    drop table crm.contacts_unpartitioned cascade;
    commit;`);
  await migrate(database.url);
}
