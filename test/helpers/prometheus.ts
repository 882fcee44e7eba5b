// Reads Prometheus text exposition the way a scraper would: every line either a
// comment (# HELP / # TYPE), empty, or one well-formed sample; samples by series.
// NaN in any case, as Prometheus reads it (prom-client writes "Nan").

export function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.e+-]+|[Nn][Aa][Nn]|\+Inf|-Inf)$/.exec(line);
    if (!match) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    samples.set(match[1], /^nan$/i.test(match[2]) ? Number.NaN : Number(match[2]));
  }
  return samples;
}

/** GET url/metrics, checked to be Prometheus text, parsed. */
export async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`);
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  if (!response.headers.get('content-type')?.startsWith('text/plain; version=0.0.4')) throw new Error('not the Prometheus content type');
  return parsePrometheus(await response.text());
}
