// COPY … FROM STDIN over a pg client, as pg_restore and psql load a table's rows (the
// pg package answers a COPY with a failure unless a query object sends the rows).
import type pg from 'pg';

interface CopyConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/** Runs `copy …  from stdin` with `data` (text format: tab between values, a line a row); resolves with the rows copied. */
export function copyIn(client: pg.Client | pg.PoolClient, statement: string, data: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let copied = 0;
    let failed: unknown;
    const submittable = {
      submit(connection: CopyConnection) {
        connection.query(statement);
      },
      handleCopyInResponse(connection: CopyConnection) {
        connection.sendCopyFromChunk(Buffer.from(data));
        connection.endCopyFrom();
      },
      handleCommandComplete(message: { text: string }) {
        copied = Number(message.text.split(' ').at(-1));
      },
      handleError(error: unknown) {
        failed = error;
      },
      handleReadyForQuery() {
        if (failed) reject(failed);
        else resolve(copied);
      },
    };
    client.query(submittable as unknown as pg.Submittable);
  });
}
