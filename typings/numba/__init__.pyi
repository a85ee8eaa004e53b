"""Our stub of numba's entry points (numba ships no types): a compiled kernel keeps its Python signature.

Without it every ``@numba.njit`` function is ``Any`` and mypy checks no call of a kernel; with it the number
and names of a kernel's arguments (and any annotations) are checked like any other function's.
"""

from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

_P = ParamSpec("_P")
_R = TypeVar("_R")

class Dispatcher(Generic[_P, _R]):
    """A compiled function: called like the Python function it compiles, which ``py_func`` keeps."""

    py_func: Callable[_P, _R]
    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...

@overload
def njit(func: Callable[_P, _R], /) -> Dispatcher[_P, _R]: ...
@overload
def njit(*args: Any, **options: Any) -> Callable[[Callable[_P, _R]], Dispatcher[_P, _R]]: ...
def __getattr__(name: str) -> Any: ...
