"""The installed streamml version (a leaf module: anything may import it without a cycle)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("streamml")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
