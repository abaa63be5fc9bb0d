// The peer side of the comparison: the fixture's rules and events through
// json-rules-engine, single-threaded, for about three seconds.
import { readFileSync } from "node:fs";
import { Engine } from "json-rules-engine";

const fixture = JSON.parse(readFileSync(process.argv[2], "utf8"));
const engine = new Engine([], { allowUndefinedFacts: true });
for (const rule of fixture.rules) engine.addRule(rule);

const facts = fixture.events.map((e) => ({
  simId: e.simId,
  imsi: e.imsi,
  eventType: e.eventType,
  groupId: e.groupId,
  payload: e.payload,
}));

let evaluated = 0;
let matched = 0;
const start = process.hrtime.bigint();
const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;
while (elapsed() < 3) {
  for (const fact of facts) {
    const { events } = await engine.run(fact);
    if (events.length > 0) matched += 1;
  }
  evaluated += facts.length;
}
console.log(JSON.stringify({
  engine: "json-rules-engine",
  rules: fixture.rules.length,
  events: evaluated,
  matchedEvents: matched,
  eventsPerSecond: evaluated / elapsed(),
}));
