// Validates ServiceMonitor and PrometheusRule objects (a JSON array on stdin) against the
// prometheus-operator's own CRD schemas, as packaged by @kubernetes-models/prometheus-operator
// (installed by scripts/install-kube-tools.sh into .tools/npm). Prints one line per problem and
// exits 1 when there is any; objects of other kinds are passed over.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const models = process.env.PROMETHEUS_OPERATOR_MODELS;
if (!models) {
  console.error('set PROMETHEUS_OPERATOR_MODELS to the installed @kubernetes-models/prometheus-operator');
  process.exit(2);
}
const { ServiceMonitor, PrometheusRule } = await import(
  pathToFileURL(`${models}/monitoring.coreos.com/v1/index.js`).href
);
const kinds = { ServiceMonitor, PrometheusRule };
const objects = JSON.parse(readFileSync(0, 'utf8'));
let problems = 0;
let checked = 0;
for (const object of objects) {
  const Model = kinds[object.kind];
  if (!Model || object.apiVersion !== 'monitoring.coreos.com/v1') continue;
  checked += 1;
  try {
    new Model(object).validate();
  } catch (error) {
    problems += 1;
    console.log(`${object.kind} ${object.metadata?.name}: ${error.message}`);
  }
}
console.log(`checked ${checked}`);
process.exit(problems > 0 ? 1 : 0);
