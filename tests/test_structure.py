"""The package's layout as a contract: public names, private names, private attributes, layers.

These read the source with ``ast``: a module that imports another module's private name, or reads
another object's ``_private`` attribute, fails here with the file and line to fix.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import tomllib

import oxen_notebook
from oxen_notebook import AsyncReply, AsyncTurn, Reply, Session, Turn
from oxen_notebook._client import Client
from oxen_notebook._exchange import ExchangeState

PACKAGE = Path(oxen_notebook.__file__).parent
ROOT = PACKAGE.parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_of(module: str) -> set[str] | None:
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not path.exists():
        return None  # an external module
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)
    return node.module or ""


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])  # oxen_notebook._x: a top-level module or subpackage


def test_public_names_report_the_package_as_their_module():
    for name in oxen_notebook.__all__:
        value = getattr(oxen_notebook, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__ == "oxen_notebook", name


def test_no_module_imports_another_modules_private_name():
    offences = []
    for path in MODULES:
        importer = _dotted(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(importer, path.name == "__init__.py", node)
            if not source.startswith("oxen_notebook") or _subpackage(source) == _subpackage(importer):
                continue  # the modules of one subpackage share their package's internals
            exported = _all_of(source)
            for alias in node.names:
                submodule = _all_of(f"{source}.{alias.name}")
                if exported is not None and alias.name not in exported and submodule is None:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno} {source}.{alias.name}")
    assert offences == []


def test_no_module_reaches_into_another_objects_private_attributes():
    allowed_bases = {"self", "cls", "super"}
    offences = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name.startswith(("_repr_", "_ipython_")):
                continue  # dunders and IPython's display protocol are public
            base = node.value
            base_name = base.id if isinstance(base, ast.Name) else None
            if base_name in allowed_bases:
                continue
            if isinstance(base, ast.Call) and getattr(base.func, "id", None) == "super":
                continue
            offences.append(f"{path.relative_to(ROOT)}:{node.lineno} .{name}")
    assert offences == []


def test_every_module_sits_in_the_layer_contract():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    listed = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    top = {p.stem if p.suffix else p.name for p in PACKAGE.iterdir() if p.name != "__init__.py"}
    top = {name for name in top if name.startswith("_") and not name.startswith("__")}
    assert top == listed


def _import_graph() -> dict[str, set[str]]:
    """Which of our modules each module imports: every import, lazy and type-checking ones too."""
    modules = {_dotted(path): path for path in MODULES}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for importer, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(importer, path.name == "__init__.py", node)
                targets = [
                    f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != importer:
                    graph[importer].add(target)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while (member := stack.pop()) != node:
                component.add(member)
            if component:
                found.append({*component, node})

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_import_circles_are_few_and_known():
    # Lazy and type-checking imports count: each is a place where two modules must be read together.
    # Gone (there were 5): the exchange <-> the reply, and the batch runner <-> templates <-> estimate
    # <-> budget. The 3 left: the façade (Session.map/.evaluate import _batch and _eval lazily, and a
    # Dask worker builds a Session), the magic's cell <-> its commands and --dry-run context, and
    # the panel's transcript <-> its tool steps.
    circles = _circles(_import_graph())
    names = [sorted(name.removeprefix("oxen_notebook.") for name in circle) for circle in circles]
    assert len(circles) <= 3, names
    assert not any({"oxen_notebook._batch._runner", "oxen_notebook._batch._templates"} <= c for c in circles)
    assert not any({"oxen_notebook._exchange", "oxen_notebook._reply"} <= c for c in circles)


def _public_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


@pytest.mark.parametrize(("sync_cls", "async_cls"), [(Reply, AsyncReply), (Turn, AsyncTurn)])
def test_every_sync_method_has_its_async_twin(sync_cls, async_cls):
    twins = {"consume": "aconsume", "close": "aclose", "__iter__": "__aiter__", "__enter__": "__aenter__"}
    sync = _public_methods(sync_cls) | {"__iter__", "__enter__"}
    for name in sync:
        twin = twins.get(name, name)
        assert hasattr(async_cls, twin), f"{async_cls.__name__} lacks {twin} (the twin of {name})"
        if inspect.iscoroutinefunction(getattr(async_cls, twin)) or twin in ("__aiter__",):
            continue
        attr = getattr(sync_cls, name)
        # A sync method whose twin has the same name must not do I/O (stop, snapshot, properties).
        assert not inspect.isgeneratorfunction(attr), name


def test_a_reply_has_an_exchange_state_and_shows_no_steps_of_it():
    # A reply *has* its state (openai-python's ChatCompletionStreamState pattern): the state's steps
    # (take, broken, fall_back, finish...) are not the public Reply's; its own private names are
    # its I/O, and an instance holds the state and what its loop needs.
    assert not issubclass(Reply, ExchangeState) and not issubclass(AsyncReply, ExchangeState)
    io = {"_repr_html_", "_run", "_arm", "_expire"}
    assert _private_names(Reply) == io | {"_send", "_wake", "_close_response"}
    assert _private_names(AsyncReply) == io | {"_asend", "_aclose_response"}
    steps = {"take", "take_body", "broken", "fall_back", "replay", "finish", "check_end"}
    assert steps <= set(dir(ExchangeState))
    assert not steps & (set(dir(Reply)) | set(dir(AsyncReply)))


def _private_names(cls: type) -> set[str]:
    return {name for name in dir(cls) if name.startswith("_") and not name.startswith("__")}


def test_the_sessions_sync_and_async_entry_points_take_the_same_arguments():
    for sync, asynchronous in (("stream", "astream"), ("ask", "aask")):
        a = inspect.signature(getattr(Session, sync)).parameters
        b = inspect.signature(getattr(Session, asynchronous)).parameters
        assert a.keys() == b.keys(), sync
        assert inspect.iscoroutinefunction(getattr(Session, asynchronous)) == (asynchronous == "aask")


def test_the_client_has_an_async_twin_for_each_send_path():
    assert inspect.iscoroutinefunction(Client.asend) and not inspect.iscoroutinefunction(Client.send)
    assert (
        inspect.signature(Client.send).parameters.keys() == inspect.signature(Client.asend).parameters.keys()
    )
