// Query plans as EXPLAIN (ANALYZE, FORMAT JSON) gives them, and what their scans read.

export interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

/** Rows each table's scans produced or filtered away, over the whole plan. */
export function rowsRead(node: PlanNode, into: Map<string, number> = new Map()): Map<string, number> {
  const table = node['Relation Name']?.replace(/_(p\d{8}(_\d{8})?|from_\d{8})$/, '');
  if (table) {
    const loops = node['Actual Loops'] ?? 1;
    const read = ((node['Actual Rows'] ?? 0) + (node['Rows Removed by Filter'] ?? 0)
      + (node['Rows Removed by Index Recheck'] ?? 0)) * loops;
    into.set(table, (into.get(table) ?? 0) + read);
  }
  for (const child of node.Plans ?? []) rowsRead(child, into);
  return into;
}
