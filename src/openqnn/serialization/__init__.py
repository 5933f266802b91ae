"""Model files: ``<stem>_net.json`` + ``<stem>.bin``."""

from openqnn.serialization.netjson import load_model, model_paths, save_model

__all__ = ["load_model", "model_paths", "save_model"]
