"""UniPose's pose phase, transcribed from the official code (VisionLLMv2/visionllmv2/model/unipose/
modeling_unipose.py and eval/eval_pose.py), for the goldens of src/decoders/unipose/{pose-mask,
pose-queries,postprocess}.ts. Batch 1, no denoising queries (inference). The official code hard-codes
50 groups; here it is the parameter `num_group` (the logic is otherwise unchanged) so that the tests
can run a few groups at a tiny width.

- prepare_for_mask            UniPose.prepare_for_mask (:887-918): attn_mask2, True = blocked.
- select_groups               TransformerDecoder.forward, layer_id == num_box_decoder_layers - 1 (:3048-3085).
- refine                      TransformerDecoder.forward, layer_id >= num_box_decoder_layers (:3088-3117).
- outputs                     UniPose.forward's heads on the last layer (:483-546).
- post_process_pose           eval_pose.py post_process_pose (:19-85).
"""
import torch
import torch.nn.functional as F


def inverse_sigmoid(x, eps=1e-3):
    """UniPose's util/misc.py inverse_sigmoid: eps 1e-3 (Grounding DINO's is 1e-5)."""
    x = x.clamp(min=0, max=1)
    x1 = x.clamp(min=eps)
    x2 = (1 - x).clamp(min=eps)
    return torch.log(x1 / x2)


class MLP(torch.nn.Module):
    """The official MLP: `layers.{i}`, ReLU between."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


def prepare_for_mask(kpt_mask, num_body_points=68, nheads=1, num_group=50):
    """kpt_mask [bs, 1 + num_body_points] -> [bs*nheads, L, L] bool, L = num_group*(1+num_body_points)."""
    tgt_size2 = num_group * (1 + num_body_points)
    attn_mask2 = torch.ones(kpt_mask.shape[0], nheads, tgt_size2, tgt_size2) < 0
    group_bbox_kpt = num_body_points
    for matchj in range(num_group * group_bbox_kpt):
        sj = (matchj // group_bbox_kpt) * group_bbox_kpt
        ej = (matchj // group_bbox_kpt + 1) * group_bbox_kpt
        if sj > 0:
            attn_mask2[:, :, matchj, :sj] = True
        if ej < num_group * group_bbox_kpt:
            attn_mask2[:, :, matchj, ej:] = True

    bs, length = kpt_mask.shape
    equal_mask = kpt_mask[:, :, None] == kpt_mask[:, None, :]
    equal_mask = equal_mask.unsqueeze(1).repeat(1, nheads, 1, 1)
    for idx in range(num_group):
        start_idx = idx * length
        end_idx = (idx + 1) * length
        attn_mask2[:, :, start_idx:end_idx, start_idx:end_idx][equal_mask] = False
        attn_mask2[:, :, start_idx:end_idx, start_idx:end_idx][~equal_mask] = True
    return attn_mask2.flatten(0, 1)


def kpt_mask_of(kk, num_body_points=68):
    """UniPose.forward: [1 (box), 1 x Kk, 0 x (68 - Kk)], length 69."""
    vis = torch.zeros(1, num_body_points, dtype=torch.long)
    vis[:, :kk] = 1
    return torch.cat((torch.ones_like(vis)[..., 0].unsqueeze(-1), vis), dim=-1)


def class_embed(x, text):
    """ContrastiveAssign with every text token valid: x @ textᵀ."""
    return x @ text.transpose(-1, -2)


def select_groups(output, new_reference_points, text, kpt_embed, pose_embed, hw, hw_append, num_group=50):
    """After the last box layer. output [nq, d] un-normed layer output; new_reference_points [nq, 4]
    the refined boxes; text [K, d]; kpt_embed [nbp, d]. Returns (topk, output [G*(1+nbp), d],
    reference [G*(1+nbp), 4]). Seq-first with bs = 1 as the official code."""
    output = output[:, None]
    new_reference_points = new_reference_points[:, None]
    d_model = output.shape[-1]
    class_unselected = class_embed(output.transpose(0, 1), text[None]).transpose(0, 1)  # [nq, bs, k]
    topk_proposals = torch.topk(class_unselected.max(-1)[0], num_group, dim=0)[1]  # [G, bs]
    new_reference_points_for_box = torch.gather(new_reference_points, 0, topk_proposals.unsqueeze(-1).repeat(1, 1, 4))
    new_output_for_box = torch.gather(output, 0, topk_proposals.unsqueeze(-1).repeat(1, 1, d_model))
    keypoint_embed = kpt_embed[None].transpose(0, 1)  # nbp, bs, d
    new_output_for_keypoint = keypoint_embed[None, :, :, :].repeat(new_output_for_box.shape[0], 1, 1, 1)
    delta_xy = pose_embed[-1](new_output_for_keypoint)[..., :2]
    keypoint_xy = (inverse_sigmoid(new_reference_points_for_box[..., :2][:, None]) + delta_xy).sigmoid()
    num_queries, _, bs, _ = keypoint_xy.shape
    aa = torch.cat((hw, hw_append), dim=0)
    keypoint_wh_weight = aa.unsqueeze(0).unsqueeze(-2).repeat(num_queries, 1, bs, 1).sigmoid()
    keypoint_wh = keypoint_wh_weight * new_reference_points_for_box[..., 2:][:, None]
    new_reference_points_for_keypoint = torch.cat((keypoint_xy, keypoint_wh), dim=-1)
    new_reference_points = torch.cat((new_reference_points_for_box.unsqueeze(1), new_reference_points_for_keypoint), dim=1).flatten(0, 1)
    output = torch.cat((new_output_for_box.unsqueeze(1), new_output_for_keypoint), dim=1).flatten(0, 1)
    return topk_proposals[:, 0], output[:, 0], new_reference_points[:, 0]


def refine(output, reference_points, bbox_embed, pose_embed, pose_hw_embed, num_body_points=68, num_group=50):
    """A pose layer's reference update: output [G*(1+nbp), d] un-normed, reference_points [.., 4]
    (the layer's input). bbox_embed = bbox_embed[layer_id], pose_embed/pose_hw_embed = [layer_id - 2]."""
    kpt_index = [x for x in range(num_group * (num_body_points + 1)) if x % (num_body_points + 1) != 0]
    output = output[:, None]
    reference_points = reference_points[:, None]
    reference_before_sigmoid = inverse_sigmoid(reference_points)
    output_bbox_norm = output[0::(num_body_points + 1)]
    reference_before_sigmoid_bbox_norm = reference_before_sigmoid[0::(num_body_points + 1)]
    new_reference_points_for_box_norm = (bbox_embed(output_bbox_norm) + reference_before_sigmoid_bbox_norm).sigmoid()
    output_kpt = output.index_select(0, torch.tensor(kpt_index))
    delta_xy_unsig = pose_embed(output_kpt)
    outputs_unsig = reference_before_sigmoid.index_select(0, torch.tensor(kpt_index)).clone()
    delta_hw_unsig = pose_hw_embed(output_kpt)
    outputs_unsig[..., :2] += delta_xy_unsig[..., :2]
    outputs_unsig[..., 2:] += delta_hw_unsig
    new_reference_points_for_keypoint = outputs_unsig.sigmoid()
    bs = new_reference_points_for_box_norm.shape[1]
    new = torch.cat((new_reference_points_for_box_norm.unsqueeze(1),
                     new_reference_points_for_keypoint.view(-1, num_body_points, bs, 4)), dim=1).flatten(0, 1)
    return new[:, 0]


def keypoint_xyzxyz_to_xyxyzz(keypoints):
    res = torch.zeros_like(keypoints)
    num_points = keypoints.shape[-1] // 3
    res[..., 0:2 * num_points:2] = keypoints[..., 0::3]
    res[..., 1:2 * num_points:2] = keypoints[..., 1::3]
    res[..., 2 * num_points:] = keypoints[..., 2::3]
    return res


def outputs(hs, ref, text, bbox_embed, pose_embed, num_body_points=68, num_group=50):
    """The last layer's heads. hs [G*(1+nbp), d] the normed intermediate, ref its input reference.
    bbox_embed = bbox_embed[5], pose_embed = pose_embed[5 - 2]."""
    layer_hs, layer_ref_sig = hs[None], ref[None]
    layer_hs_bbox_norm = layer_hs[:, 0::(num_body_points + 1), :]
    reference_before_sigmoid_bbox_norm = layer_ref_sig[:, 0::(num_body_points + 1), :]
    boxes = (bbox_embed(layer_hs_bbox_norm) + inverse_sigmoid(reference_before_sigmoid_bbox_norm)).sigmoid()
    logits = class_embed(layer_hs_bbox_norm, text[None])
    kpt_index = [x for x in range(num_group * (num_body_points + 1)) if x % (num_body_points + 1) != 0]
    layer_hs_kpt = layer_hs.index_select(1, torch.tensor(kpt_index))
    delta_xy_unsig = pose_embed(layer_hs_kpt)
    layer_ref_sig_kpt = layer_ref_sig.index_select(1, torch.tensor(kpt_index))
    unsig = delta_xy_unsig + inverse_sigmoid(layer_ref_sig_kpt[..., :2])
    vis = torch.ones_like(unsig)
    xyv = torch.cat((unsig, vis[:, :, 0].unsqueeze(-1)), dim=-1).sigmoid()
    res = xyv.reshape((1, num_group, num_body_points, 3)).flatten(2, 3)
    return logits[0], boxes[0], keypoint_xyzxyz_to_xyxyzz(res)[0]


def box_cxcywh_to_xyxy(x):
    x_c, y_c, w, h = x.unbind(-1)
    return torch.stack([(x_c - 0.5 * w), (y_c - 0.5 * h), (x_c + 0.5 * w), (y_c + 0.5 * h)], dim=-1)


def post_process_pose(out_logits, out_bbox, out_keypoints, target_sizes, num_classes=1, topk=100, num_body_points=17):
    """eval_pose.py post_process_pose with the identity label mapping and threshold 0. Batched
    [bs, nq, k], [bs, nq, 4], [bs, nq, 68*3] (xyxyzz); target_sizes [bs, 2] (h, w)."""
    out_logits = out_logits[:, :, :num_classes]
    prob = out_logits.sigmoid()
    prob = prob.view(out_logits.shape[0], -1)
    k_value = min(topk, prob.size(1))
    topk_values, topk_indexes = torch.topk(prob, k_value, dim=1)
    scores = topk_values
    topk_boxes = torch.div(topk_indexes, out_logits.shape[2], rounding_mode="floor")
    labels = topk_indexes % out_logits.shape[2]
    boxes = box_cxcywh_to_xyxy(out_bbox)
    boxes = torch.gather(boxes, 1, topk_boxes.unsqueeze(-1).repeat(1, 1, 4))
    img_h, img_w = target_sizes.unbind(1)
    scale_fct = torch.stack([img_w, img_h, img_w, img_h], dim=1).to(boxes.device)
    boxes = boxes * scale_fct[:, None, :]
    keypoints = torch.gather(out_keypoints, 1, topk_boxes.unsqueeze(-1).repeat(1, 1, out_keypoints.shape[-1]))
    Z_pred = keypoints[:, :, :(num_body_points * 2)]
    V_pred = torch.ones_like(Z_pred)[:, :, :num_body_points]
    scale_fct = torch.stack([img_w, img_h], dim=1).repeat(1, num_body_points)[:, None, :]
    Z_pred = Z_pred * scale_fct
    keypoints_res = torch.zeros(Z_pred.shape[0], Z_pred.shape[1], 3 * num_body_points, dtype=Z_pred.dtype)
    keypoints_res[..., 0::3] = Z_pred[..., 0::2]
    keypoints_res[..., 1::3] = Z_pred[..., 1::2]
    keypoints_res[..., 2::3] = V_pred[..., 0::1]
    return scores, labels, boxes, keypoints_res
