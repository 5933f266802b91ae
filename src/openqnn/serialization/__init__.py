"""Model files: ``<stem>_net.json`` + ``<stem>.bin``."""

from openqnn.serialization.netjson import (
    graph_from_doc,
    graph_to_json,
    load_model,
    model_paths,
    node_to_json,
    save_model,
    tensor_to_json,
)

__all__ = ["graph_from_doc", "graph_to_json", "load_model", "model_paths", "node_to_json", "save_model",
           "tensor_to_json"]
