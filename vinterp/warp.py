"""The motion ("flow") head of the generator.

The flow head turns one backbone pass into `m` in-between frames. For the in-between at time
`t_k = k / (m + 1)` (k = 1..m) the backbone predicts a flow to each endpoint, an occlusion/blend
mask and a small residual; the frame is

    I_t = mask * warp(I_0, F_t->0) + (1 - mask) * warp(I_1, F_t->1) + residual.

Everything here is plain tensor code with no knowledge of the backbone, so `networks.py` can
wrap any backbone (U-Net, ResNet) in `FlowHead`; the warps and the upsampling are in
`vinterp.sampling`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vinterp.flows import FlowCache, check_backward
from vinterp.motion import (
    FALLBACKS,
    PRIOR_INPUTS,
    PriorSpec,
    add_flows_at,
    cost_volume,
    fallback_logit,
    flows_at,
    prior_channels,
)
from vinterp.sampling import (
    backward_warp,
    pixel_coords,
    sample_at,
    upsample_bilinear,
    warp_many,
)

# The residual only has to fix what warping cannot (new content, lighting); keeping it small
# stops the head from falling back to painting pixels, which is what the pixels head does.
RESIDUAL_SCALE = 0.2

FLOW_PARAMS = ("shared", "free")

# Prior flows enter the backbone in backbone pixels times this, so motions of tens of pixels
# become O(1) inputs like the frames themselves.
PRIOR_INPUT_SCALE = 0.1


# ---------------------------------------------------------------------------------------------
# Flow head

def head_channels(n_out: int, param: str, fallback: str = "none") -> int:
    """Backbone output channels the flow head needs for `n_out` in-betweens.

    Layout: [V (2, shared only) | d0 (2m) | d1 (2m) | mask logits (m) | residual (3m) |
    fallback logits (m, with a fallback)], i.e. 8 per in-between (9 with a fallback) plus 2
    for the window motion V with `shared`. The fallback comes last so a model without one
    has the same layout for everything else.
    """
    if param not in FLOW_PARAMS:
        raise ValueError(f"unknown flow_param {param!r}; choose one of {', '.join(FLOW_PARAMS)}")
    if fallback not in FALLBACKS:
        raise ValueError(f"unknown fallback {fallback!r}; choose one of {', '.join(FALLBACKS)}")
    return (9 if fallback != "none" else 8) * n_out + (2 if param == "shared" else 0)


class FlowHead(nn.Module):
    """Endpoints -> in-betweens by warping, around any backbone.

    forward(x: `(B, 6, H, W)` float32 in [-1, 1], endpoints I_0 then I_1)
        -> `(B, 3*n_out, H, W)` float32 in [-1, 1], in-betweens in temporal order.
    H and W must be multiples of `downscale`; the downscaled input is padded (replicate) to
    the backbone's multiple and its outputs cropped back.

    Parameterisations (`param`), flows in pixels:
      shared: F_t->0 = -t V + d0_t, F_t->1 = (1 - t) V + d1_t — one motion field V for the
              window (linear motion) plus per-t corrections, so all in-betweens share the
              bulk of the motion estimate.
      free:   F_t->0 = d0_t, F_t->1 = d1_t, independent per t.
    mask_t = sigmoid(logit_t + logit(1 - t)): a zero logit gives the time-weighted blend.
    residual_t = RESIDUAL_SCALE * tanh(r_t).
    With `corr_radius` r > 0 the backbone also sees a (2r+1)^2 cost volume between the
    endpoints and its soft-argmax motion V_est (`motion.cost_volume`) as extra input channels.
    (Adding V_est to the flows directly was measured worse than the blend on the held-out
    clips, so it is an input cue only and the untrained model stays exactly the blend.)
    With `prior="dis"` the flows are instead seeded by classical DIS flow between the
    endpoints (`motion.prior_flows`, at full resolution, not trainable):
    F_t->0 += -t F01, F_t->1 += -(1 - t) F10, the linear-motion approximation of the `dis`
    baseline. With `prior="stream"` the input is four frames, `(B, 12, H, W)` = I_-1, I_0,
    I_1, I_2 (the inputs before and after the pair; a neighbour that is an exact copy of its
    endpoint means there is none), and the seed is quadratic motion from them (the `stream`
    baseline). The backbone still sees only the two endpoints, plus both DIS flows, the
    errors of warping each endpoint onto the other with them (where the prior is wrong) and
    the endpoints warped to every t by the prior (`_prior_cues`), and learns corrections,
    occlusion masks and residuals; the untrained model reproduces the prior's baseline.
    With `gated`, everything the backbone outputs is scaled by `prior_gate`: zero where the
    prior's flows explain the endpoints, so there the output stays the prior's exactly.
    With `fallback="blend"` (needs a prior) the frame is a third-way mix,
    `(1 - beta) * (mask * w0 + (1 - mask) * w1) + beta * ((1 - t) I_0 + t I_1) + residual`,
    beta = sigmoid(learned logit + `motion.fallback_logit`): the cross-fade takes over where the
    prior's two warps disagree more than the endpoints do (its motion is wrong there); the
    untrained model is then `prior_frames`, the `fallback` baseline.
    `flow_method` (`flows.FLOW_METHODS`) is the prior's optical flow: dis (luma) or
    dis_colour (chroma planes too, where luma is blind). With `velocity` (stream prior) each
    endpoint's flow also has the neighbouring pair's constant velocity as a candidate
    (`motion.velocity_candidate`). `backward` (`flows.BACKWARD_FLOWS`): the flows against
    time order from their own flow calls or by inverting the forward ones. With `reversal`
    k > 0 the prior's flows at each t are read where each in-between pixel came from rather
    than in place (`reverse_flows`, k fixed-point steps at the backbone's resolution), for
    the backbone's cues and the warps. With `reversal_mix` w > 0 the flows read in place
    (plus the same learned corrections) are a second motion hypothesis at the middle
    in-betweens (`mix_times`): both are warped, each time-blended with the learned mask, and
    mixed with weights 1 - w and w before the fallback and the residual (the squared error's
    optimum where the two disagree is between them; 6 more warps a pair for 2:5).
    Flow channels are multiplied by `flow_gain` (in backbone pixels): with a zero-initialised
    last layer and Adam's bounded steps, a raw output grows by ~0.01 per step, so motions of
    tens of pixels would take thousands of steps to reach without a gain.
    The backbone runs on the endpoints downscaled by `downscale` (bilinear, antialiased). Flows,
    masks and residuals are formed at that resolution (cheap), then upsampled bilinearly in one
    call (flows multiplied by `downscale`) and the warp happens at full resolution.
    """

    def __init__(self, backbone: nn.Module, n_out: int, downscale: int = 1,
                 param: str = "shared", flow_gain: float = 1.0, corr_radius: int = 0,
                 backbone_multiple: int = 1, prior: str = "none", gated: bool = False,
                 fallback: str = "none", flow_method: str = "dis", velocity: bool = False,
                 reversal: int = 0, backward: str = "dis", reversal_mix: float = 0.0) -> None:
        super().__init__()
        if downscale < 1:
            raise ValueError(f"flow_downscale must be >= 1, got {downscale}")
        self.backbone = backbone
        self.n_out = n_out
        self.downscale = int(downscale)
        self.param = param
        self.flow_gain = float(flow_gain)
        self.corr_radius = int(corr_radius)
        self.backbone_multiple = int(backbone_multiple)
        prior_channels(prior, n_out)  # validates the name
        self.prior = prior
        self.n_in = PRIOR_INPUTS[prior]
        self.gated = bool(gated) and prior != "none"
        if fallback != "none" and prior == "none":
            raise ValueError(f"fallback {fallback!r} needs a flow prior (it compares the "
                             "prior's warps with the endpoints)")
        self.fallback = fallback
        # Reused prior flows between consecutive calls on a stream (see flows.FlowCache).
        self.flow_cache = FlowCache(method=flow_method)
        self.velocity = bool(velocity)  # prior_flows uses it with the stream prior only
        check_backward(backward)
        self.backward = backward
        if reversal < 0:
            raise ValueError(f"flow_reversal must be >= 0, got {reversal}")
        self.reversal = int(reversal) if prior != "none" else 0
        if not 0 <= reversal_mix < 1:
            raise ValueError(f"reversal_mix must be in [0, 1), got {reversal_mix}")
        self.mix_times = mix_times(n_out)
        self.reversal_mix = mix_weight(self.reversal, reversal_mix, n_out)
        self.out_channels = head_channels(n_out, param, fallback)
        t = torch.arange(1, n_out + 1, dtype=torch.float32) / (n_out + 1)
        # Not saved in checkpoints: fully determined by n_out.
        self.register_buffer("t", t, persistent=False)
        self.register_buffer("mask_prior", torch.log((1 - t) / t), persistent=False)
        self.backbone_format = torch.contiguous_format  # see `backbone_channels_last`

    def backbone_channels_last(self) -> FlowHead:
        """Run the backbone in channels-last layout, weights and input: oneDNN's faster
        convolutions on the CPU (the U-Net at 640x360 input: -20% CPU time, same output to
        1e-6). Returns self."""
        self.backbone.to(memory_format=torch.channels_last)
        self.backbone_format = torch.channels_last
        return self

    def forward(self, x: torch.Tensor, return_aux: bool = False,
                prior: tuple[torch.Tensor, torch.Tensor] | None = None):
        # `return_aux` goes through forward (not forward_with_aux) so DDP's gradient sync
        # hooks still run when training needs the flows.
        out = self._run(x, aux=return_aux, prior=prior)
        return out if return_aux else out[0]

    def prior_spec(self) -> PriorSpec | None:
        """What computes this head's classical prior outside it (None without a prior)."""
        if self.prior == "none":
            return None
        return PriorSpec(self.prior, self.flow_cache.method, self.velocity, self.backward)

    def forward_with_aux(self, x: torch.Tensor,
                         prior: tuple[torch.Tensor, torch.Tensor] | None = None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Frames plus intermediates for visualisation and losses.

        `prior`: the classical prior `(pair, coef)` as `prior_spec().flows(x)` gives it, when
        it was computed elsewhere (the training data's workers); computed here when None.

        Returns `(frames, aux)`: frames `(B, 3m, H, W)` in [-1, 1]; aux has
        `flow0`, `flow1`: `(B, m, 2, H, W)` pixels (F_t->0, F_t->1); `mask`: `(B, m, 1, H, W)`
        in (0, 1), weight of the warped I_0; `residual`: `(B, m, 3, H, W)`;
        `warped0`, `warped1`: `(B, m, 3, H, W)` the warped endpoints.
        """
        return self._run(x, aux=True, prior=prior)

    def _fields(self, raw: torch.Tensor, fallback: torch.Tensor | None = None) -> torch.Tensor:
        """Backbone output `(B, head_channels, h, w)` -> `(B, 8m, h, w)`:
        [flows (B, 2 endpoints, m, 2, h, w) flattened | mask (m) | residual (3m)], plus
        [beta (m)] (`(B, 9m, h, w)`) given the prior's `fallback` logits `(B, m, h, w)`."""
        b, _, h, w = raw.shape
        m = self.n_out
        coef = torch.stack([-self.t, 1 - self.t]).view(1, 2, m, 1, 1, 1)
        if self.param == "shared":
            v, raw = raw[:, :2], raw[:, 2:]
            flows = raw[:, :4 * m].reshape(b, 2, m, 2, h, w) + coef * v.view(b, 1, 1, 2, h, w)
        else:
            flows = raw[:, :4 * m]
        flows = flows.reshape(b, 2, m, 2, h, w) * self.flow_gain
        mask = torch.sigmoid(raw[:, 4 * m:5 * m] + self.mask_prior.view(1, m, 1, 1))
        residual = RESIDUAL_SCALE * torch.tanh(raw[:, 5 * m:8 * m])
        parts = [flows.reshape(b, 4 * m, h, w), mask, residual]
        if fallback is not None:
            parts.append(torch.sigmoid(raw[:, 8 * m:9 * m] + fallback))
        return torch.cat(parts, 1)

    def _run(self, x: torch.Tensor, aux: bool,
             prior: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, c, h, w = x.shape
        if c != 3 * self.n_in:
            raise ValueError(f"the flow head with prior {self.prior!r} takes {self.n_in} frames "
                             f"({3 * self.n_in} channels), got {c}")
        s, m = self.downscale, self.n_out
        if h % s or w % s:
            raise ValueError(f"flow head input is {h}x{w}; height and width must be multiples "
                             f"of flow_downscale={s}")
        x = x.float()
        if self.prior == "none":
            prior = None
        elif prior is None:  # pair (B, 2, 2, H, W), coef (B, 2, 2, 2, H, W) pixels
            prior = self.prior_spec().flows(x, self.flow_cache)
        if self.n_in == 4:
            x = x[:, 3:9]  # the endpoints; the neighbours only shape the prior's motion
        small = x
        if s > 1:
            small = F.interpolate(x, size=(h // s, w // s), mode="bilinear",
                                  align_corners=False, antialias=True)
        inp = small
        if self.corr_radius > 0:
            inp = torch.cat([small, *cost_volume(small[:, :3], small[:, 3:], self.corr_radius)], 1)
        gate = fb = delta = None
        if prior is not None:
            cues, delta = _prior_cues(small, *prior, s, self.t, self.reversal)
            gate = prior_gate(cues[:, 4:10]) if self.gated else None
            if self.fallback != "none":
                fb = _cue_fallback(small, cues, m)
            inp = torch.cat([inp, cues], 1)
        # The backbone wants multiples of its own 2**depth; padding here, at 1/s resolution,
        # costs far less than padding full frames (640x360 would otherwise become 768x512).
        hs, ws, bm = h // s, w // s, self.backbone_multiple
        ph, pw = (-hs) % bm, (-ws) % bm
        # Reordered to the backbone's layout before padding: a channels-last replicate pad is
        # 6x faster than the NCHW one plus the reorder of the padded tensor (0.9 against 5.2
        # ms at 640x360), with the same values.
        inp = inp.contiguous(memory_format=self.backbone_format)
        if ph or pw:
            inp = F.pad(inp, (0, pw, 0, ph), mode="replicate")
        raw = self.backbone(inp)  # the replicate pad keeps the layout
        # The head's slicing wants NCHW; the padding is cut first, so less is reordered.
        raw = raw[..., :hs, :ws].float().contiguous()
        fields = self._fields(raw if gate is None else raw * gate, fb)
        undo = None  # the reversal's change at the `mix_times`, for their in-place reading
        if delta is not None:  # the prior's flow reversal, at 1/s resolution
            fields[:, :4 * m] += delta
            if self.reversal_mix > 0:
                undo = delta.view(b, 2, m, 2, hs, ws)[:, :, self.mix_times]
                undo = undo.reshape(b, -1, hs, ws)
        if s > 1:
            fields = upsample_bilinear(fields, s)
            if undo is not None:
                undo = upsample_bilinear(undo, s)
        flows = fields[:, :4 * m].view(b, 2, m, 2, h, w)  # backbone pixels
        if prior is not None:
            # The prior is in full-resolution pixels; `_warp_blend` scales everything by s.
            flows = add_flows_at(flows, prior[1], self.t, 1.0 / s)
        mask = fields[:, 4 * m:5 * m].unsqueeze(2)
        residual = fields[:, 5 * m:8 * m].view(b, m, 3, h, w)
        if undo is not None:
            undo = undo.view(b, 2, -1, 2, h, w)
        w0, w1, mixed = self._warp_blend(x, flows, undo, mask, s)
        beta = None
        if fb is not None:
            beta = fields[:, 8 * m:].unsqueeze(2)
            mixed = torch.lerp(mixed, _cross_fade(x, self.t), beta)
        frames = (residual + mixed).clamp_(-1, 1).view(b, 3 * m, h, w)
        if not aux:
            return frames, {}
        out = {"flow0": flows[:, 0] * s, "flow1": flows[:, 1] * s,
               "mask": mask, "residual": residual, "warped0": w0, "warped1": w1}
        if beta is not None:
            out["fallback"] = beta
        return frames, out

    def _warp_blend(self, x: torch.Tensor, flows: torch.Tensor, undo: torch.Tensor | None,
                    mask: torch.Tensor, s: int) -> tuple[torch.Tensor, ...]:
        """Both endpoints of x `(B, 6, H, W)` warped by flows `(B, 2, m, 2, H, W)` (backbone
        pixels) in one `sample_at` call and blended by mask `(B, m, 1, H, W)`: (w0, w1 `(B, m,
        3, H, W)`, blend). Given `undo` `(B, 2, k, 2, H, W)`, the flow reversal's change at the
        k in-betweens of `mix_times`, those are also warped by `flows - undo` (the prior read in
        place), blended the same way and mixed in with weight `reversal_mix`."""
        b, _, m, _, h, w = flows.shape
        mid = self.mix_times if undo is not None else slice(0, 0)
        k = m + mid.stop - mid.start
        # [reversed, m | in place, mid] in one buffer, for one sampling call
        coords = flows.new_empty(b, 2, k, 2, h, w)
        pixel_coords(flows, scale=s, out=coords[:, :, :m])
        if k > m:
            coords[:, :, m:] = torch.add(coords[:, :, mid], undo, alpha=-s)
        warped = sample_at(x.reshape(b * 2, 3, h, w), coords.view(b * 2, k, 2, h, w))
        warped = warped.view(b, 2, k, 3, h, w)
        w0, w1 = warped[:, 0], warped[:, 1]  # (B, k, 3, H, W)
        blend = _lerp(w1[:, :m], w0[:, :m], mask)  # mask * w0 + (1 - mask) * w1
        if k > m:
            in_place = torch.lerp(w1[:, m:], w0[:, m:], mask[:, mid])
            blend[:, mid] = torch.lerp(blend[:, mid], in_place, self.reversal_mix)
        return w0[:, :m], w1[:, :m], blend


def _lerp(start: torch.Tensor, end: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`torch.lerp`, its result contiguous whatever the inputs' layout: OpenCV's warps
    (`sample_at`) are channels-last underneath, and the head's later views want NCHW. The
    lerp writes it directly, with no copy after (where autograd allows `out=`)."""
    if torch.is_grad_enabled() and (start.requires_grad or end.requires_grad
                                    or weight.requires_grad):
        return torch.lerp(start, end, weight).contiguous()
    out = start.new_empty(torch.broadcast_shapes(start.shape, end.shape, weight.shape))
    return torch.lerp(start, end, weight, out=out)


# The learned part only acts where the prior's flows fail to explain the endpoints: its
# outputs are scaled by clamp(e / GATE_ERROR, 0, 1), e the prior's brightness-constancy error
# (mean abs RGB, [0, 1] units, dilated by GATE_DILATE backbone pixels). Static and
# well-estimated regions keep the classical result exactly (learned sub-pixel corrections
# measured worse there: they blur).
GATE_ERROR = 0.05
GATE_DILATE = 2


def prior_gate(errors: torch.Tensor) -> torch.Tensor:
    """errors: `(B, 6, h, w)` the two warp errors of `_prior_cues` (inputs in [-1, 1]) ->
    gate `(B, 1, h, w)` in [0, 1]."""
    e = errors.abs().view(errors.shape[0], 2, 3, *errors.shape[-2:]).mean(2).amax(1, True) / 2
    k = 2 * GATE_DILATE + 1
    e = F.max_pool2d(e, k, 1, GATE_DILATE)
    return (e / GATE_ERROR).clamp_(0, 1)


def mix_times(m: int) -> slice:
    """The in-betweens (of m, at t = k / (m + 1)) that `reversal_mix` applies to: 1/4 < t <
    3/4. On 4 windows of each of 8 training clips (run YR's weights, weight 1/3) these
    three of five held 85% of the gain of mixing all five (+0.023 against +0.027 dB mean,
    worst clip -0.007 against -0.023), for 60% of the extra warps."""
    mid = [k for k in range(m) if m + 1 < 4 * (k + 1) < 3 * (m + 1)]
    return slice(mid[0], mid[-1] + 1) if mid else slice(0, 0)


def mix_weight(reversal: int, reversal_mix: float, m: int) -> float:
    """The weight `reversal_mix` takes: 0 where there is nothing to mix (no flow reversal, so
    both readings are the same, or no in-between among the `mix_times`)."""
    mid = mix_times(m)
    return float(reversal_mix) if reversal and mid.stop > mid.start else 0.0


@torch.no_grad()
def prior_frames(x: torch.Tensor, pair: torch.Tensor, coef: torch.Tensor, t: torch.Tensor,
                 downscale: int = 4, fallback: str = "blend", reversal: int = 0,
                 reversal_mix: float = 0.0) -> torch.Tensor:
    """What the flow head outputs with nothing learned: the prior's classical in-betweens.

    x: `(B, 6, H, W)` float32 in [-1, 1], the endpoints; pair, coef: the prior's flows
    (`motion.prior_flows`, full-resolution pixels); t: `(m,)` the times; `downscale`: the
    resolution the fallback and the flow reversal work at (the backbone's); `reversal`: the
    fixed-point steps of `reverse_flows` (0: the flows read in place); `reversal_mix`: with
    `reversal`, the weight of the frames warped by the flows read in place, averaged with the
    reversed flows' at the `mix_times` in-betweens (as `FlowHead`). Returns `(B, 3m, H, W)`
    float32 in [-1, 1]: both endpoints warped by the prior's flows, time-blended, and with
    `fallback="blend"` mixed with the cross-fade by sigmoid(`motion.fallback_logit`).
    """
    b, _, h, w = x.shape
    m, s = t.numel(), downscale
    in_place = ft = flows_at(coef, t)
    cues = None
    if fallback != "none" or reversal:
        small = F.interpolate(x, size=(h // s, w // s), mode="bilinear", align_corners=False,
                              antialias=True) if s > 1 else x
        cues, delta = _prior_cues(small, pair, coef, s, t, reversal)
        if delta is not None:
            if s > 1:
                delta = upsample_bilinear(delta, s)
            ft = ft + delta.view(b, 2, m, 2, h, w) * s
    mixed = _time_blend(x, ft, t)
    weight, mid = mix_weight(reversal, reversal_mix, m), mix_times(m)
    if weight:
        mixed[:, mid] = torch.lerp(mixed[:, mid], _time_blend(x, in_place[:, :, mid], t[mid]),
                                   weight)
    if fallback != "none":
        beta = torch.sigmoid(_cue_fallback(small, cues, m))
        if s > 1:
            beta = upsample_bilinear(beta, s)
        mixed = torch.lerp(mixed, _cross_fade(x, t), beta.unsqueeze(2))
    return mixed.clamp_(-1, 1).reshape(b, 3 * m, h, w)


def _time_blend(x: torch.Tensor, flows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x: `(B, 6, H, W)` endpoints, flows: `(B, 2, m, 2, H, W)` pixels -> `(B, m, 3, H, W)`:
    both endpoints warped to each t, weighted (1 - t, t)."""
    return torch.lerp(warp_many(x[:, 3:], flows[:, 1]), warp_many(x[:, :3], flows[:, 0]),
                      (1 - t).view(1, -1, 1, 1, 1))


def _cross_fade(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x: `(B, 6, H, W)` endpoints -> `(B, m, 3, H, W)` the cross-fade `(1 - t) I_0 + t I_1`.
    One lerp per t with a scalar weight: the same values, half the time of one broadcast
    lerp (1.0 against 2.0 ms at 640x360 on one thread)."""
    b, _, h, w = x.shape
    out = x.new_empty(b, t.numel(), 3, h, w)
    for k, tk in enumerate(t.tolist()):
        torch.lerp(x[:, :3], x[:, 3:], tk, out=out[:, k])
    return out


def _cue_fallback(small: torch.Tensor, cues: torch.Tensor, m: int) -> torch.Tensor:
    """The fallback logits `(B, m, h, w)` from `_prior_cues`' candidates."""
    b, _, h, w = cues.shape
    cand = cues[:, 10:].view(b, 2, m, 3, h, w)
    return fallback_logit(small, cand[:, 0], cand[:, 1])


def reverse_flows(flows: torch.Tensor, steps: int) -> torch.Tensor:
    """Flows from each in-between back to the endpoints, read where each pixel came from.

    flows: `(B, 2, m, 2, h, w)` pixels, the prior's motion of each endpoint's pixels read in
    place (`motion.flows_at`): entry (e, k) at p is minus where endpoint e's pixel p is at
    t_k. That is the right flow at p only where the motion field is locally constant; at a
    moving object's edge the pixel at p at time t came from p + F(p) in the endpoint, not p.
    Each of `steps` fixed-point steps reads the field there instead, F <- field(p + F(p)),
    approximating flow reversal (splatting) with backward warps only. Returns the same shape.
    On 6 windows of each of 8 training clips (`fallback` prior, 640x360, at 1/4 resolution):
    +0.098 dB mean for 2 steps, worst clip -0.015 (`benchmarks/flow_reversal.py`); odd step
    counts do worse at occlusions, where the iteration oscillates (1: +0.079, worst -0.083; 3:
    +0.094, worst -0.090), and 4 steps gain +0.009 more.
    """
    b, _, m, _, h, w = flows.shape
    field = flows.reshape(b * 2 * m, 2, h, w)
    out = field
    for _ in range(steps):
        out = warp_many(field, out.unsqueeze(1))[:, 0]
    return out.reshape(b, 2, m, 2, h, w)


def _prior_cues(small: torch.Tensor, pair: torch.Tensor, coef: torch.Tensor, s: int,
                t: torch.Tensor, reversal: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Backbone inputs from the prior flows, `(B, 10 + 6m, h, w)`:
    [F01, F10 in backbone pixels times PRIOR_INPUT_SCALE (4) | I_1 warped onto I_0 by F01
    minus I_0 (3) | I_0 warped onto I_1 by F10 minus I_1 (3) | for each t, I_0 and I_1 warped
    to time t by the prior's flows (6m)], and with `reversal` steps of `reverse_flows` the
    change they make to the per-t flows, `(B, 4m, h, w)` backbone pixels (else None).

    The errors show where the prior flow fails; the candidates show the backbone the frames it
    is choosing between, so it can place masks and corrections where they disagree.
    small: `(B, 6, h, w)` the downscaled endpoints; pair: `(B, 2, 2, H, W)` F01, F10 and
    coef: `(B, 2, 2, 2, H, W)` the prior's motion (`motion.prior_flows`), full-resolution
    pixels; t: `(m,)` the in-between times.
    """
    b, _, hs, ws = small.shape
    flows = torch.cat([pair.reshape(b, 4, *pair.shape[-2:]),
                       coef.reshape(b, 8, *coef.shape[-2:])], 1)
    if flows.shape[-2:] != (hs, ws):
        flows = F.interpolate(flows, size=(hs, ws), mode="bilinear", align_corners=False,
                              antialias=True) / s
    pair, coef = flows[:, :4].view(b, 2, 2, hs, ws), flows[:, 4:].view(b, 2, 2, 2, hs, ws)
    per_t = flows_at(coef, t)  # (B, 2, m, 2, h, w)
    m = per_t.shape[2]
    delta = None
    if reversal:
        reversed_t = reverse_flows(per_t, reversal)
        delta = (reversed_t - per_t).reshape(b, 4 * m, hs, ws)
        per_t = reversed_t
    i0, i1 = small[:, :3], small[:, 3:]
    err0 = backward_warp(i1, pair[:, 0]) - i0
    err1 = backward_warp(i0, pair[:, 1]) - i1
    cand0, cand1 = warp_many(i0, per_t[:, 0]), warp_many(i1, per_t[:, 1])
    cues = torch.cat([pair.reshape(b, 4, hs, ws) * PRIOR_INPUT_SCALE, err0, err1,
                      cand0.reshape(b, 3 * m, hs, ws), cand1.reshape(b, 3 * m, hs, ws)], 1)
    return cues, delta
