#!/usr/bin/env python3
"""Writes small files in PyTorch's exact torch.save formats, without needing torch installed.

A stand-in `torch` / `torch._utils` module gives pickle the same global names torch uses, so
the bytes follow the real layouts:
  * zip format (torch >= 1.6): <name>/data.pkl, <name>/data/<key>, <name>/version, byteorder;
    tensors as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks),
    storages as persistent ids ('storage', torch.FloatStorage, key, 'cpu', numel).
  * legacy format (torchvision's 2017 vgg16-397923af.pth): pickles of the magic number, the
    protocol version and sys_info, then the object with persistent ids
    ('storage', type, key, location, numel, None), the sorted storage keys, then each storage
    as an 8-byte little-endian element count followed by its raw data.

Usage: python3 tools/make_torch_fixtures.py tests/data
"""
import collections, io, pickle, struct, sys, types, zipfile

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*args):
    raise RuntimeError("stand-in")


def _rebuild_tensor(*args):
    raise RuntimeError("stand-in")


_rebuild_tensor_v2.__module__ = _rebuild_tensor.__module__ = "torch._utils"
utils._rebuild_tensor_v2, utils._rebuild_tensor = _rebuild_tensor_v2, _rebuild_tensor


class FloatStorage:
    pass


class DoubleStorage:
    pass


FloatStorage.__module__ = DoubleStorage.__module__ = "torch"
torch.FloatStorage, torch.DoubleStorage, torch._utils = FloatStorage, DoubleStorage, utils
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


class Storage:
    def __init__(self, key, values, kind=FloatStorage):
        self.key, self.values, self.kind = key, values, kind

    def raw(self):
        fmt = "<%d%s" % (len(self.values), "f" if self.kind is FloatStorage else "d")
        return struct.pack(fmt, *self.values)


class Tensor:
    def __init__(self, storage, offset, size, stride, legacy=False):
        self.s, self.offset, self.size, self.stride, self.legacy = storage, offset, size, stride, legacy

    def __reduce_ex__(self, proto):
        if self.legacy:
            return (_rebuild_tensor, (self.s, self.offset, self.size, self.stride))
        return (_rebuild_tensor_v2, (self.s, self.offset, self.size, self.stride, False, collections.OrderedDict()))


def pickler(f, legacy):
    p = pickle.Pickler(f, protocol=2)

    def pid(obj):
        if isinstance(obj, Storage):
            t = ("storage", obj.kind, obj.key, "cpu", len(obj.values))
            return t + (None,) if legacy else t
        return None

    p.persistent_id = pid
    return p


def state(legacy):
    a = Storage("0", [0.5 * i for i in range(12)])
    b = Storage("1", [1.0, -2.0, 3.0], DoubleStorage)
    sd = collections.OrderedDict()
    sd["features.0.weight"] = Tensor(a, 0, (2, 3), (3, 1), legacy)  # contiguous
    sd["features.0.bias"] = Tensor(a, 6, (3,), (1,), legacy)  # an offset into a shared storage
    sd["head.t"] = Tensor(a, 0, (3, 2), (1, 3), legacy)  # a transposed (strided) view
    sd["extra.double"] = Tensor(b, 0, (3,), (1,), legacy)
    sd._metadata = collections.OrderedDict(version=1)
    return sd, [a, b]


def write_zip(path):
    sd, storages = state(False)
    buf = io.BytesIO()
    pickler(buf, False).dump(sd)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("fixture/data.pkl", buf.getvalue())
        z.writestr("fixture/byteorder", "little")
        for s in storages:
            z.writestr("fixture/data/" + s.key, s.raw())
        z.writestr("fixture/version", "3\n")


def write_legacy(path):
    sd, storages = state(True)
    with open(path, "wb") as f:
        pickle.dump(0x1950A86A20F9469CFC6C, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump(dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=8)), f, protocol=2)
        pickler(f, True).dump(sd)
        keys = sorted(s.key for s in storages)
        pickle.dump(keys, f, protocol=2)
        for k in keys:
            s = next(s for s in storages if s.key == k)
            f.write(struct.pack("<q", len(s.values)))
            f.write(s.raw())


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    write_zip(out + "/torch_zip_format.pth")
    write_legacy(out + "/torch_legacy_format.pth")
    print("wrote", out + "/torch_zip_format.pth", out + "/torch_legacy_format.pth")
