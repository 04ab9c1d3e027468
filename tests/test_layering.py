"""The package's layers point one way: no import cycle, no import of a higher layer, no
private name of another module (read from the source, lazy imports inside functions too)."""
import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "stylegan_ad")

# Each module's layer: a module may import modules of its own layer or below.
LAYERS = {
    0: ("errors", "files", "console", "metrics", "parallel", "fullres", "artifacts", "losses", "configs", "data",
        "models", "plots", "interop", "registry"),
    1: ("train",),
    2: ("detect", "failures", "stages", "correct"),
    3: ("main_job", "inference", "report", "video", "imported"),
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def _modules() -> dict[str, str]:
  out = {}
  for d, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(d, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
        out[rel.removesuffix(".__init__")] = os.path.join(d, f)
  return out


def _layer(module: str) -> int:
  parts = module.split(".")
  return LAYER_OF.get(parts[1], -1) if len(parts) > 1 else -1   # the package itself: below everything


def _imports(modules: dict[str, str]):
  """(importer, imported module, names taken from it, line) for every stylegan_ad import,
  and (importer, module alias, attribute, line) for every `alias._private` access."""
  edges, private = [], []
  for name, path in modules.items():
    tree = ast.parse(open(path, encoding="utf-8").read())
    aliases = {}
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stylegan_ad"):
        for a in node.names:
          full = f"{node.module}.{a.name}"
          target = full if full in modules else node.module
          edges.append((name, target, a.name if target == node.module else None, node.lineno))
          aliases[a.asname or a.name] = target
      elif isinstance(node, ast.Import):
        for a in node.names:
          if a.name.startswith("stylegan_ad"):
            edges.append((name, a.name, None, node.lineno))
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
          and node.attr.startswith("_") and not node.attr.startswith("__")):
        private.append((name, aliases[node.value.id], node.attr, node.lineno))
  return edges, private


def test_every_module_has_a_layer():
  missing = [m for m in _modules() if m != "stylegan_ad" and _layer(m) < 0]
  assert not missing, f"give these modules a layer in LAYERS: {missing}"


def test_no_import_cycle():
  modules = _modules()
  graph = {m: set() for m in modules}
  for a, b, _, _ in _imports(modules)[0]:
    if b in modules and a != b and b != "stylegan_ad":
      graph[a].add(b)
  state, stack = {}, []

  def visit(m):
    state[m] = "open"
    stack.append(m)
    for n in sorted(graph[m]):
      if state.get(n) == "open":
        raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
      if n not in state:
        visit(n)
    stack.pop()
    state[m] = "done"

  for m in sorted(graph):
    if m not in state:
      visit(m)


def test_imports_point_down_and_take_no_private_names():
  modules = _modules()
  edges, private = _imports(modules)
  upward = [f"{a}:{line} imports {b} (layer {_layer(b)} above {_layer(a)})" for a, b, _, line in edges
            if _layer(b) > _layer(a)]
  assert not upward, upward
  taken = [f"{a}:{line} imports {b}.{n}" for a, b, n, line in edges
           if n and n.startswith("_") and not n.startswith("__") and b != a]
  taken += [f"{a}:{line} uses {b}.{n}" for a, b, n, line in private if b != a]
  assert not taken, taken


def test_the_checks_see_a_violation(tmp_path):
  """The reader of the source finds a lazy upward import and a private name."""
  global ROOT
  pkg = tmp_path / "stylegan_ad"
  (pkg / "train").mkdir(parents=True)
  (pkg / "__init__.py").write_text("")
  (pkg / "train" / "__init__.py").write_text("")
  (pkg / "errors.py").write_text("def _hidden():\n  pass\n")
  (pkg / "train" / "loop.py").write_text("def f():\n  from stylegan_ad import inference\n"
                                        "  from stylegan_ad import errors\n  errors._hidden()\n")
  (pkg / "inference.py").write_text("from stylegan_ad.train import loop\n")
  saved, ROOT = ROOT, str(pkg)
  try:
    edges, private = _imports(_modules())
  finally:
    ROOT = saved
  assert ("stylegan_ad.train.loop", "stylegan_ad.inference", None, 2) in edges
  assert ("stylegan_ad.train.loop", "stylegan_ad.errors", "_hidden", 4) in private
