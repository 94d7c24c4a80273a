"""Child workspaces: a workspace inside another, as Caffe2's plan steps (`create_workspace`) and
control-flow ops (`Do`) make them.

    ChildBlobs(parent)                       every parent blob is visible under its own name
    ChildBlobs(parent, {"x": "outer_x"})     only the bound names are, each under its inner name

A visible blob is the parent's: reading it reads the parent, writing it writes the parent. Every
other blob the child writes is its own and disappears with it.
"""


class ChildBlobs(dict):
    def __init__(self, parent, bindings=None):
        super().__init__()
        self._parent = parent
        self._bindings = bindings  # inner name -> parent name, or None: all names, unchanged

    def _outer(self, name):
        """The parent's name for `name` when the parent holds it for the child, else None."""
        if dict.__contains__(self, name):
            return None
        if self._bindings is None:
            return name if name in self._parent else None
        return self._bindings.get(name)

    def __missing__(self, name):
        outer = self._outer(name)
        if outer is None:
            raise KeyError(name)
        return self._parent[outer]

    def __contains__(self, name):
        if dict.__contains__(self, name):
            return True
        outer = self._outer(name)
        return outer is not None and outer in self._parent

    def get(self, name, default=None):
        return self[name] if name in self else default

    def __setitem__(self, name, value):
        outer = self._outer(name)
        if outer is not None:
            self._parent[outer] = value
        else:
            dict.__setitem__(self, name, value)

    def setdefault(self, name, default=None):
        if name not in self:
            self[name] = default
        return self[name]

    def pop(self, name, *default):
        outer = self._outer(name)
        if outer is not None:
            return self._parent.pop(outer, *default)
        return dict.pop(self, name, *default)

    def keys(self):
        if self._bindings is None:
            visible = set(self._parent.keys())
        else:
            visible = {inner for inner, outer in self._bindings.items() if outer in self._parent}
        return set(dict.keys(self)) | visible

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def values(self):
        return [self[k] for k in self.keys()]

    def items(self):
        return [(k, self[k]) for k in self.keys()]


def child_workspace(store, bindings=None, name="child"):
    """A Workspace of the same kind as `store` whose blobs are ChildBlobs over store's; it
    draws random numbers from the parent's generators (one stream, as in one Caffe2 process)."""
    child = type(store)("%s/%s" % (store.name, name))
    child.blobs = ChildBlobs(store.blobs, bindings)
    child._generators = store._generators
    child.root_folder = store.root_folder
    return child
