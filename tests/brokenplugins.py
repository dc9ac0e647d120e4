"""Plugins that fail in each way the studio isolates, shared by the command-line and dialog tests.

Each value is a module's source for the ``install_plugin`` fixture; the key is its entry-point
name. ``fails-to-build`` registers fine and fails only when its backbone is built.
"""

BROKEN = {
    "no-import": "import cnnstudio_no_such_module_anywhere\n",
    "raises": """
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_backbones(registry):
            raise RuntimeError("boom in the hook")
    """,
    "invalid": """
        from cnnstudio.plugins import BackboneProvider, hookimpl

        @hookimpl
        def cnnstudio_register_backbones(registry):
            registry.add_backbone(BackboneProvider(id="Bad Id", display_name="Bad", build=print))
    """,
    "fails-to-build": """
        from cnnstudio.plugins import BackboneProvider, hookimpl

        def build(params, input_size, registry):
            raise RuntimeError("this backbone cannot be built")

        @hookimpl
        def cnnstudio_register_backbones(registry):
            registry.add_backbone(BackboneProvider(id="fragile", display_name="Fragile", build=build,
                                                   default_input_size=16, min_input_size=8))
    """,
}
