"""What gdino_release.py and unipose_release.py (and tiny_pose.py) share: a module's state_dict as a
checkpoint layout. PyTorch shares a module placed in several ModuleList slots, so one tensor appears
under several names; the loaders read one of them (`canonical`) and free the others (`alias_of`)."""
import torch

DTYPES = {torch.float32: 'F32', torch.int64: 'I64'}


def shared_groups(state):
    """The state_dict's names grouped by the tensor they name, in state_dict order."""
    groups = {}
    for name, t in state.items():
        groups.setdefault(t.data_ptr(), []).append(name)
    return list(groups.values())


def entries(module, prefix, canonical):
    """[{name, shape, dtype, buffer?, alias_of?}] of every state_dict name (buffers included), under `prefix`."""
    state = module.state_dict(keep_vars=True)
    buffers = {n for n, _ in module.named_buffers()}
    main = {n: canonical(names) for names in shared_groups(state) for n in names}
    out = []
    for name, t in state.items():
        entry = {'name': prefix + name, 'shape': list(t.shape), 'dtype': DTYPES[t.dtype]}
        if name in buffers:
            entry['buffer'] = True
        if main[name] != name:
            entry['alias_of'] = prefix + main[name]
        out.append(entry)
    return out


def parameter_counts(module, part):
    """Parameters (each shared one once, no buffers), and their count by part(name)."""
    by_part = {}
    for name, p in module.named_parameters():
        by_part[part(name)] = by_part.get(part(name), 0) + p.numel()
    return sum(p.numel() for p in module.parameters()), by_part


def print_counts(tensors, parameters, by_part):
    print(f'{len(tensors)} tensors ({sum(1 for t in tensors if "alias_of" in t)} aliases, '
          f'{sum(1 for t in tensors if t.get("buffer"))} buffers); {parameters / 1e6:.3f} M parameters')
    for name, n in by_part.items():
        print(f'  {name}: {n / 1e6:.3f} M')
