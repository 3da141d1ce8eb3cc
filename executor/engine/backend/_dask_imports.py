"""What the engine's dask backend needs installed, checked with an error that says what to install."""

from __future__ import annotations

import typing as T


def import_distributed() -> T.Any:
    """The ``distributed`` module, or an ImportError saying to install the ``dask`` extra."""
    try:
        import distributed
    except ImportError as error:  # pragma: no cover - the dev env has dask
        raise ImportError(
            "DaskJob needs dask.distributed: pip install 'pytest-executor[dask]'"
        ) from error
    return distributed


def check_tls_support() -> None:
    """Raise ImportError, saying what to install, if a LocalCluster we start cannot have its TLS certificates.

    Our clusters use ``security=True`` (temporary certificates), which needs
    the ``cryptography`` package; without it distributed fails half-way
    through the cluster's construction and leaves an unclosed cluster behind.
    """
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise ImportError(
            "the dask clusters the engine starts are TLS-secured with temporary certificates, which needs "
            "the 'cryptography' package: pip install 'pytest-executor[dask]' (or pip install cryptography)"
        ) from None
