"""PyTorch reference for VisionLLM v2's super link (visionllmv2/model/modeling_visionllmv2.py):

  - after each routing token the query embeddings of its table are spliced in (det/pose: 4 rows,
    ids [EMB]..[EMB4]; gen/edit: 64 rows, id [EMB] x 64);
  - the LAST-layer hidden states (after the final RMSNorm) at those positions are gathered per block;
  - the blocks go to the decoders as the official model does (modeling_visionllmv2.py:770-834): in an
    answer with [POSE] blocks (the pose task) UniPose takes the [DET] blocks as object classes
    (unipose.projection_llava) and the [POSE] blocks as keypoints (projection_kpt_llava); otherwise
    [DET]/[SEG]/[GRD] blocks go to gdino.patch2query. Each is an MLP (d -> 256 -> 256 -> 256, ReLU
    between), then the mean over the 4 queries; generation/editing: sd.emb_proj (Linear, GELU, Linear) then
    sd.llm2sd_mapper, a torch nn.Transformer (norm_first, 1 encoder + 1 decoder layer, ReLU FFN,
    8 heads) whose target is the 77 learnable sd.llm2sd_mapper_queries.
The mapper here IS torch.nn.Transformer, loaded from the checkpoint's tensors.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import reference_mllm as ref

ROUTES = {  # routing token -> (query table, projection prefix or kind)
    '[DET]': 'det', '[SEG]': 'det', '[GRD]': 'det', '[POSE]': 'pose', '[GEN]': 'gen', '[EDIT]': 'edit',
}
TABLES = {'det': 'emb_embeddings_det', 'pose': 'emb_embeddings_pose', 'gen': 'emb_embeddings_gen', 'edit': 'emb_embeddings_edit'}


def query_ids(added, route, rows):
    """The ids the official code puts after a routing token: [EMB]..[EMBn] (4 rows) or [EMB] x 64."""
    first = added['[EMB]']
    return [first + i for i in range(rows)] if rows <= 8 else [first] * rows


def splice(ids, added, params):
    """Inserts each routing token's query positions after it (the generation path: the text holds
    no [EMB] tokens). Returns the new ids, the positions of each block's queries, and per position
    the table row to use (or None)."""
    out, blocks, table_rows = [], [], []
    names = {v: k for k, v in added.items()}
    for i in ids:
        out.append(i)
        table_rows.append(None)
        token = names.get(i)
        if token in ROUTES:
            route = ROUTES[token]
            table = params[TABLES[route] + '.weight']
            rows = table.shape[0]
            start = len(out)
            for r, qid in enumerate(query_ids(added, route, rows)):
                out.append(qid)
                table_rows.append((route, r))
            blocks.append((route, token, list(range(start, start + rows))))
    return out, blocks, table_rows


def embeddings(params, ids, table_rows, image_features=None, patch_id=None):
    table = params['llm.model.embed_tokens.weight']
    x = table[torch.tensor(ids)].clone()
    for pos, tr in enumerate(table_rows):
        if tr is not None:
            route, r = tr
            x[pos] = params[TABLES[route] + '.weight'][r]
    if image_features is not None:
        mask = torch.tensor(ids) == patch_id
        x[mask] = image_features.reshape(-1, x.shape[-1])
    return x[None]


def mlp(params, prefix, x, layers=3):
    for i in range(layers):
        x = F.linear(x, params[f'{prefix}.layers.{i}.weight'], params[f'{prefix}.layers.{i}.bias'])
        if i < layers - 1:
            x = F.relu(x)
    return x


def mapper_module(params, prefix, d, heads, ff):
    m = nn.Transformer(d_model=d, nhead=heads, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=ff,
                       dropout=0.0, batch_first=True, norm_first=True).double()
    state = {k[len(prefix) + 1:]: v for k, v in params.items() if k.startswith(prefix + '.')}
    m.load_state_dict(state, strict=True)
    return m.eval()


def project(params, config, blocks, hidden):
    """Conditions per decoder input, from final hidden states [L, d]: 'det' [n, 256], 'objects',
    'keypoints', 'gen'/'edit' [n, 77, d_sd]."""
    out = {}
    pose_task = any(b[1] == '[POSE]' for b in blocks)
    det = [b for b in blocks if b[0] == 'det' and not pose_task]
    if det:
        q = torch.stack([hidden[b[2]] for b in det])                      # [n, 4, d]
        out['det'] = mlp(params, 'gdino.patch2query', q).mean(-2)          # [n, 256]
    if pose_task:
        objects = torch.stack([hidden[b[2]] for b in blocks if b[1] == '[DET]'])
        keypoints = torch.stack([hidden[b[2]] for b in blocks if b[1] == '[POSE]'])
        out['objects'] = mlp(params, 'unipose.projection_llava', objects).mean(-2)
        out['keypoints'] = mlp(params, 'unipose.projection_kpt_llava', keypoints).mean(-2)
    for route, module in (('gen', 'sd'), ('edit', 'ip2p')):
        blks = [b for b in blocks if b[0] == route]
        if not blks:
            continue
        cfg = config[f'{module}_config']
        d, heads, ff = cfg['sd_hidden_size'], 8, cfg['sd_hidden_size'] * 4
        mapper = mapper_module(params, f'{module}.llm2sd_mapper', d, heads, ff)
        conds = []
        for b in blks:
            x = F.linear(hidden[b[2]], params[f'{module}.emb_proj.0.weight'], params[f'{module}.emb_proj.0.bias'])
            x = F.linear(F.gelu(x), params[f'{module}.emb_proj.2.weight'], params[f'{module}.emb_proj.2.bias'])
            with torch.no_grad():
                conds.append(mapper(src=x[None], tgt=params[f'{module}.llm2sd_mapper_queries'])[0])   # [77, d_sd]
        out[route] = torch.stack(conds)
    return out


def final_hidden(params, config, embeds):
    return ref.llama_hidden(params, config['llm_config'], embeds)[0]
