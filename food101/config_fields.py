"""The documented-field helper every config section uses (the training config's sections in
food101.train.config and diagnostics' DiagnosticsConfig): a dataclass field with its default
and the comment `dump_config` writes next to its value. It imports nothing from food101, so
any layer can declare settings with it."""
from dataclasses import field


def documented(default, doc):
    """A config field with its default and the comment the dumped YAML shows for it."""
    return field(default=default, metadata={"doc": doc})
