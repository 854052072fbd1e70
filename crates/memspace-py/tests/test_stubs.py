"""The type stubs (python/memspace/__init__.pyi) against the package: the names they declare
public are `memspace.__all__`, and every method they give a class is there at run time."""

import ast
import pathlib

import memspace

STUB = pathlib.Path(memspace.__file__).with_suffix(".pyi")


def stub_module():
    return ast.parse(STUB.read_text(), filename=str(STUB))


def public(name):
    return not name.startswith("_")


def declared(tree):
    """The module-level names the stub defines: classes, functions and annotated variables."""
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def test_the_stub_declares_exactly_the_names_of_all():
    names = {name for name in declared(stub_module()) if public(name)}
    assert names == set(memspace.__all__)


def test_every_method_of_a_stub_class_exists_at_run_time():
    # Special methods are left out: the buffer protocol, say, has no `__buffer__` attribute
    # before Python 3.12.
    classes = {
        name: node
        for name, node in declared(stub_module()).items()
        if isinstance(node, ast.ClassDef)
    }

    def methods(node):
        own = {
            m.name
            for m in node.body
            if isinstance(m, ast.FunctionDef) and not m.name.startswith("__")
        }
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                own |= methods(classes[base.id])
        return own

    missing = [
        f"{name}.{method}"
        for name, node in classes.items()
        if public(name)
        for method in methods(node)
        if not hasattr(getattr(memspace, name), method)
    ]
    assert not missing, f"the stub declares methods the package lacks: {missing}"
