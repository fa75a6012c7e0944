# Writes a FileDescriptorSet of the envoy.* modules whose names start with the given
# prefixes (and all their imports), read from the xds-protos package.
# usage: gen-descriptors.py OUT PREFIX...
import importlib, pkgutil, sys, envoy
from google.protobuf import descriptor_pb2, descriptor_pool
prefixes = sys.argv[2:]
mods = []
for m in pkgutil.walk_packages(envoy.__path__, 'envoy.'):
    if m.name.endswith('_pb2') and any(m.name.startswith(p) for p in prefixes):
        try:
            mods.append(importlib.import_module(m.name))
        except Exception as e:
            print("skip", m.name, e, file=sys.stderr)
seen = {}
def add(fd):
    if fd.name in seen: return
    for dep in fd.dependencies: add(dep)
    p = descriptor_pb2.FileDescriptorProto(); fd.CopyToProto(p); seen[fd.name] = p
for m in mods: add(m.DESCRIPTOR)
fds = descriptor_pb2.FileDescriptorSet(file=list(seen.values()))
open(sys.argv[1], 'wb').write(fds.SerializeToString())
print(len(seen), "files", file=sys.stderr)
