"""Validates a chart's values.yaml against its values.schema.json, and proves the schema bites:
each deliberately broken copy must be rejected. Prints one JSON line per case."""
import copy
import json
import sys

import jsonschema
import yaml

chart = sys.argv[1]
schema = json.load(open(f"{chart}/values.schema.json"))
values = yaml.safe_load(open(f"{chart}/values.yaml"))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)


def errors(doc):
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


print(json.dumps({"case": "values.yaml", "errors": errors(values)}))
broken = {
    "replicaCount: 0": lambda v: v.__setitem__("replicaCount", 0),
    "unknown top-level key": lambda v: v.__setitem__("replicas", 2),
    "ingest.requireSignatures: sometimes": lambda v: v["ingest"].__setitem__("requireSignatures", "sometimes"),
    "controller.routingWindow: soon": lambda v: v["controller"].__setitem__("routingWindow", "soon"),
    "clickhouse.url without scheme": lambda v: v["clickhouse"].__setitem__("url", "clickhouse:8123"),
}
for name, breaks in broken.items():
    doc = copy.deepcopy(values)
    breaks(doc)
    print(json.dumps({"case": name, "errors": errors(doc)}))
