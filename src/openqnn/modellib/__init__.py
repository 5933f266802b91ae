"""Model libraries: ``<stem>.cpp`` (graph composition source), ``qnn-model-lib-generator`` (compile it with its
weights into a shared library) and the loader (compose the graph through the C ABI of
``include/openqnn/model_api.h``)."""

from openqnn.modellib.build import build_library, library_paths
from openqnn.modellib.library import is_model_library, library_info, load_library
from openqnn.modellib.source import write_source

__all__ = ["build_library", "is_model_library", "library_info", "library_paths", "load_library", "write_source"]
