"""IVR menus: documents, validation, and the engine that walks them."""
