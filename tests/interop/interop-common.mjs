// What the TypeScript interop clients share: a check runner with its tally, and the text of a
// tool result.
export function checker() {
  const tally = { passed: 0, failed: 0 };
  async function check(name, fn) {
    try { await fn(); tally.passed++; console.log(`ok   ${name}`); }
    catch (e) { tally.failed++; console.log(`FAIL ${name}: ${e?.stack || e}`); }
  }
  return { check, tally };
}
export const text = (r) => r.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
