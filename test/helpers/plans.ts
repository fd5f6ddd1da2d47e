/** Reading EXPLAIN (FORMAT JSON) output: which nodes read the sessions table, through which indexes. */

export type PlanNode = Record<string, unknown> & { Plans?: PlanNode[] };

export function planNodes(plan: unknown): PlanNode[] {
  const found: PlanNode[] = [];
  const visit = (node: PlanNode) => {
    found.push(node);
    for (const child of node.Plans ?? []) visit(child);
  };
  const root = (plan as Array<{ Plan: PlanNode }>)[0]?.Plan;
  if (root) visit(root);
  return found;
}

/** The indexes of auth.refresh_session the plan reads, sorted (a bitmap scan names its index on its Bitmap Index Scan node). */
export function sessionIndexes(plan: unknown): string[] {
  const names = planNodes(plan)
    .map((node) => node['Index Name'])
    .filter((name): name is string => typeof name === 'string' && name.startsWith('refresh_session_'));
  return [...new Set(names)].sort();
}

/** The plan nodes that read auth.refresh_session. */
export function sessionScans(plan: unknown): PlanNode[] {
  return planNodes(plan).filter((node) => node['Relation Name'] === 'refresh_session' && node['Node Type'] !== 'ModifyTable');
}
