#!/usr/bin/env python3
"""Counts wxthunk's public methods and functions whose docs have an
`# Examples` section, from rustdoc's JSON (target/doc/wxthunk.json, made by
`.ci/doc-examples`), and fails when fewer than half have one. Deprecated
items and trait implementations are not counted."""
import json
import sys

doc = json.load(open(sys.argv[1]))
index = doc["index"]
krate = doc["root"]


def item(i):
    return index.get(str(i))


def is_fn(it):
    return it is not None and "function" in it.get("inner", {})


methods = {}  # id -> display name
in_impl = set()
for iid, it in index.items():
    imp = it.get("inner", {}).get("impl")
    if imp is None:
        continue
    for m in imp["items"]:
        in_impl.add(str(m))
    if imp.get("trait") is not None or imp.get("is_synthetic") or imp.get("blanket_impl"):
        continue
    ty = imp["for"].get("resolved_path", {}).get("path", "?")
    for m in imp["items"]:
        mi = item(m)
        if is_fn(mi) and mi.get("visibility") == "public":
            methods[str(m)] = f"{ty.split('::')[-1]}::{mi['name']}"

# Free functions: those reachable from the crate root's items.
def walk(mod_id, seen):
    mod = item(mod_id)
    if mod is None or str(mod_id) in seen:
        return
    seen.add(str(mod_id))
    for c in mod["inner"].get("module", {}).get("items", []):
        ci = item(c)
        if ci is None:
            continue
        inner = ci.get("inner", {})
        if "function" in inner and ci.get("visibility") == "public":
            methods[str(c)] = ci["name"]
        elif "use" in inner and inner["use"].get("id") is not None:
            target = item(inner["use"]["id"])
            if is_fn(target):
                methods[str(inner["use"]["id"])] = target["name"]
        elif "module" in inner:
            walk(c, seen)


walk(krate, set())

counted = {i: n for i, n in methods.items() if not item(i).get("deprecation")}
with_examples = sorted(n for i, n in counted.items() if "# Examples" in (item(i).get("docs") or ""))
without = sorted(n for i, n in counted.items() if "# Examples" not in (item(i).get("docs") or ""))
total = len(counted)
print(f"{len(with_examples)} of {total} public methods and functions have an `# Examples` section")
if "-v" in sys.argv:
    print("without:", ", ".join(without))
if total < 50:
    sys.exit(f"only {total} public methods and functions found: is the JSON right?")
if 2 * len(with_examples) < total:
    sys.exit("fewer than half: add `# Examples` to the methods a user calls first")
