"""WASM plugins: where they are, and the limits every call runs under.

Read when a plugin is loaded: a change applies to the plugins reloaded (or all, at a restart).
"""

from app.core.fields import Field

SECTIONS = {
    "plugins": {
        "dir": Field("str", "", hot=False, help="Directory of plugin directories (plugin.toml + plugin.wasm); "
                                     "empty: plugins in the data directory."),
        "max_fuel": Field("int", 1_000_000_000, hot=False, minimum=1, maximum=10**15,
            help="Most WASM instructions (fuel) one call may use; a plugin's own [resources] may only lower it."),
        "max_memory_mb": Field("int", 64, hot=False, minimum=1, maximum=4096,
            help="Largest linear memory a plugin instance may grow to, in MiB; [resources] may only lower it."),
        "max_execution_time_ms": Field("int", 5000, hot=False, minimum=10, maximum=600_000,
            help="Longest wall-clock time of one call; [resources] may only lower it."),
        "max_module_mb": Field("int", 32, minimum=1, maximum=1024,
            help="Largest plugin.wasm admitted, in MiB."),
        "allow_wasi": Field("bool", False, hot=False,
            help="Let plugins whose [permissions] ask for WASI have it (arguments, environment, clocks)."),
        "allow_filesystem": Field("bool", False, hot=False,
            help="Let WASI plugins read the directories their [permissions] filesystem lists (inside their own)."),
    },
    "rate_limits": {
        "plugins_read": Field("limit", "50/s", help="Limit of listing plugins."),
        "plugins_write": Field("limit", "10/s", help="Limit of reloading, disabling and enabling plugins."),
    },
}
