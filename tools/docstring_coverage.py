"""Docstring coverage of the public functions and classes in src/: prints the figure, fails below --min.

Public means every name on the path from the module down is public: a module-level class or function whose name
does not start with ``_``, and the methods of public classes with such names (dunder methods such as ``__init__``
are not counted; the class docstring documents the constructor). Functions nested inside functions are not API.

    python tools/docstring_coverage.py [--min 90] [--list] [PATH ...]
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _public(name: str) -> bool:
    return not name.startswith("_")


def _module_public(path: Path) -> bool:
    return all(_public(part) or part == "__init__.py" for part in path.parts)


def definitions(tree: ast.Module) -> Iterator[tuple[str, Definition]]:
    """Yield (qualified name, node) for every public class, function and method of a module."""

    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, Definition]]:
        for node in body:
            if isinstance(node, Definition) and _public(node.name):
                yield prefix + node.name, node
                if isinstance(node, ast.ClassDef):
                    yield from walk(node.body, f"{prefix}{node.name}.")

    yield from walk(tree.body, "")


def _is_overload(node: Definition) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == "overload") or (isinstance(d, ast.Attribute) and d.attr == "overload")
        for d in node.decorator_list
    )


def coverage(paths: list[Path]) -> tuple[int, int, list[str]]:
    """Count (documented, total, missing names) over the Python files under the given paths."""
    documented = total = 0
    missing: list[str] = []
    for base in paths:
        files = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for file in files:
            if not _module_public(file.relative_to(base.parent if base.is_dir() else file.parent)):
                continue
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            for name, node in definitions(tree):
                if _is_overload(node):
                    continue
                total += 1
                if ast.get_docstring(node):
                    documented += 1
                else:
                    where = file.relative_to(ROOT) if file.is_relative_to(ROOT) else file
                    missing.append(f"{where}:{node.lineno} {name}")
    return documented, total, missing


def main(argv: list[str] | None = None) -> int:
    """Print the coverage figure; return 1 when it is below ``--min``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "src"])
    parser.add_argument("--min", type=float, default=90.0, help="fail below this percentage (default 90)")
    parser.add_argument("--list", action="store_true", help="list the undocumented names")
    args = parser.parse_args(argv)
    documented, total, missing = coverage([p.resolve() for p in args.paths])
    percent = 100.0 * documented / total if total else 100.0
    if args.list:
        for name in missing:
            print(name)
    print(
        f"docstring coverage: {percent:.1f}% ({documented}/{total} public functions and classes; minimum {args.min:g}%)"
    )
    if percent < args.min:
        print(f"docstring coverage below {args.min:g}%: run with --list to see what is missing", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
