"""A per-epoch progress bar that shows the running loss and disappears when the epoch ends."""

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


class _Bar:
    def __init__(self, bar: "tqdm[None]") -> None:
        self._bar = bar

    def update(self, running_loss: float) -> None:
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{running_loss:.4f}")


@contextmanager
def progress(steps: int, description: str) -> Iterator[_Bar]:
    # disable=None: no bar when stderr is not a terminal (a Kubernetes job log, a grid run under nohup)
    bar: tqdm[None] = tqdm(total=steps, desc=description, leave=False, dynamic_ncols=True, disable=None)
    try:
        yield _Bar(bar)
    finally:
        bar.close()
