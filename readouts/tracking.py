"""MooG-style recurrent tracking readout for points and boxes.

Paper 3.4 / App. D.5-D.6; mechanics of MooG's `ConditionalAutoregressiveReadout` over a
`TransformerReadout` corrector (probing_spec.md, 5.1):
  1. z0 = MLP(Fourier(query))                    per-track latent (L = 512)
  2. for each frame t (features resampled in time to the clip's frames beforehand):
       s   = z0 where t is the track's query frame, else s
       c_t = s + Corrector(s, F_t)               Linear -> 3 cross-attention blocks -> LN -> Linear
       s   = LN_state(c_t + Predictor(c_t))      MLP predictor for the next frame
  3. heads on every c_t: values = sigmoid(MLP(c_t)) (points: (x, y), boxes: (x0, y0, x1, y1),
     normalised to [0, 1]); logits = MLP(c_t) = [visibility, certainty].
Counts at D = 1024: 12,897,668 (points), 12,931,462 (boxes); in general 9,751,940 + 3,072 D
for points.
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from readouts.layers import (CrossAttentionBlock, Mlp, check_activations, fourier_features,
                             lecun_init_, scale_norm)

COORDS = {"points": 2, "boxes": 4}


class TrackingReadout(nn.Module):
    """Tracks queries through (b, T, h, w, D) activations.

    feature_dim: D. kind: "points" (queries (x, y)) or "boxes" (queries (x0, y0, x1, y1)), both
    normalised to [0, 1] of the frame width / height.
    latent_size / qkv_size / num_heads / mlp_size / num_layers: corrector sizes (paper: 512, 512,
    8, 2048, 3). num_fourier_bases: K of the query encoding. token_position_bases: K' > 0 appends
    the Fourier code of each key's centre, in the queries' convention, to the keys; 0 = paper.
    from_query: predict values as sigmoid(logit(query) + MLP(c_t)) with a zero-initialised last
    layer, so the head starts at the trivial predictor (zero motion / first box everywhere);
    False = the paper's absolute sigmoid(MLP(c_t)).
    pixel_keys: c > 0 attends over PIXELS instead of tokens (not the paper's): a linear
    unpatchify maps each token to its patch x patch pixels' c-channel features (the pixel's
    position code appended when token_position_bases > 0), so a track can be placed inside a
    token; 0 = the paper's token keys. patch: the token's size in pixels (8 = WALT's grid).
    forward(x (b, T, h, w, D), queries (b, q, 2|4), query_frames (b, q) long or None = all 0)
    -> {"values": (b, q, T, 2|4) in [0, 1], "logits": (b, q, T, 2) [visibility, certainty]}.
    """

    def __init__(self, feature_dim: int, kind: str = "points", *, latent_size: int = 512,
                 qkv_size: int = 512, num_heads: int = 8, mlp_size: int = 2048,
                 num_layers: int = 3, num_fourier_bases: int = 16, token_position_bases: int = 0,
                 from_query: bool = False, pixel_keys: int = 0, patch: int = 8):
        super().__init__()
        if kind not in COORDS:
            raise ValueError(f"kind must be one of {sorted(COORDS)}; received '{kind}'")
        self.feature_dim, self.kind, self.num_fourier_bases = feature_dim, kind, num_fourier_bases
        self.token_position_bases = token_position_bases
        self.from_query = from_query
        self.pixel_keys, self.patch = pixel_keys, patch
        coords = COORDS[kind]
        if pixel_keys:
            self.unpatchify = nn.Linear(feature_dim, patch * patch * pixel_keys)
        key_dim = (pixel_keys or feature_dim) + 4 * token_position_bases
        # 1. initialiser
        self.init_mlp = Mlp(2 * coords * num_fourier_bases, latent_size, latent_size)
        # 2. corrector, predictor, state norm
        self.corrector_in = nn.Linear(latent_size, latent_size)
        self.corrector = nn.ModuleList(
            CrossAttentionBlock(latent_size, key_dim, qkv_size=qkv_size,
                                num_heads=num_heads, mlp_size=mlp_size)
            for _ in range(num_layers))
        self.corrector_norm = scale_norm(latent_size)
        self.corrector_out = nn.Linear(latent_size, latent_size)
        self.predictor = Mlp(latent_size, latent_size, latent_size)
        self.state_norm = scale_norm(latent_size, eps=1e-4)
        # 3. heads
        self.value_head = Mlp(latent_size, latent_size, coords)
        self.logit_head = Mlp(latent_size, latent_size, 2)
        lecun_init_(self)
        if from_query:
            # Start at the trivial predictor: a zero last layer leaves every track at its query.
            torch.nn.init.zeros_(self.value_head[-1].weight)

    def _key_positions(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        """(h * w, 4K') Fourier code of each key cell's centre ((j + 0.5) / w, (i + 0.5) / h):
        the queries' own convention ((x, y) in [0, 1], the same frequencies), so a query and a
        key at the same place have matching codes and a dot product can find it."""
        ys = (torch.arange(h, device=like.device, dtype=like.dtype) + 0.5) / h
        xs = (torch.arange(w, device=like.device, dtype=like.dtype) + 0.5) / w
        centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)   # (h, w, [x, y])
        return fourier_features(rearrange(centres, "h w c -> (h w) c"), self.token_position_bases)

    def correct(self, state: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """state (b, q, L), frame tokens (b, n, D) -> corrected state (b, q, L)."""
        h = self.corrector_in(state)
        for block in self.corrector:
            h = block(h, frame)
        return state + self.corrector_out(self.corrector_norm(h))

    def forward(self, x: torch.Tensor, queries: torch.Tensor,
                query_frames: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_activations(x, self.feature_dim, head=type(self).__name__)
        query_frames = check_queries(self, x, queries, query_frames)
        # 1.
        z0 = self.init_mlp(fourier_features(queries.to(x.dtype), self.num_fourier_bases))
        grid = x.shape[2:4]
        if self.pixel_keys:
            # Each token -> its p x p pixels (channel order (u v c)), then pixels in raster order.
            x = rearrange(self.unpatchify(x), "b t h w (u v c) -> b t (h u) (w v) c",
                          u=self.patch, v=self.patch)
            grid = x.shape[2:4]
        tokens = rearrange(x, "b t h w d -> t b (h w) d")
        if self.token_position_bases:
            code = repeat(self._key_positions(*grid, x), "n c -> t b n c",
                          t=tokens.shape[0], b=tokens.shape[1])
            tokens = torch.cat([tokens, code], dim=-1)
        # 2.
        state, corrected = z0, []
        for t, frame in enumerate(tokens):
            state = torch.where((query_frames == t)[..., None], z0, state)
            c_t = self.correct(state, frame)
            corrected.append(c_t)
            state = self.state_norm(c_t + self.predictor(c_t))
        latents = torch.stack(corrected, dim=2)                      # (b, q, T, L)
        # 3.
        offsets = self.value_head(latents)
        if self.from_query:
            # values = sigmoid(logit(query) + offset): the query is where a track starts.
            start = torch.logit(queries.to(x.dtype).clamp(1e-4, 1 - 1e-4))
            offsets = offsets + start[:, :, None]
        return {"values": torch.sigmoid(offsets),
                "logits": self.logit_head(latents)}


VISIBILITY_RULES = ("certainty", "visibility")


def check_queries(head, x: torch.Tensor, queries: torch.Tensor,
                  query_frames: torch.Tensor | None) -> torch.Tensor:
    """Checks a tracking head's queries against its features x (b, t, h, w, D): queries must be
    (b, q, 2) points or (b, q, 4) boxes (head.kind); returns query_frames, (b, q) long zeros
    (every track starts in frame 0) when None."""
    coords = COORDS[head.kind]
    if queries.ndim != 3 or queries.shape[0] != x.shape[0] or queries.shape[-1] != coords:
        raise ValueError(f"{type(head).__name__}({head.kind}): queries must be "
                         f"(b={x.shape[0]}, q, {coords}); received {tuple(queries.shape)}")
    if query_frames is None:
        query_frames = queries.new_zeros(queries.shape[:2], dtype=torch.long)
    return query_frames


def predicted_visible(logits: torch.Tensor, threshold: float = 0.5,
                      rule: str = "certainty") -> torch.Tensor:
    """(..., 2) [visibility, certainty] logits -> bool visible.

    rule 'certainty' (the paper's, MooG / TAPIR): visible iff it is predicted visible and the
      certainty of its location exceeds 50%: sigmoid(visibility) * sigmoid(certainty) > threshold.
      The certainty target is "within 6 px of the 256 raster" (1.5 px at 64 x 64), so a readout
      that localises to a few pixels calls nearly every point occluded (results/controls/).
    rule 'visibility': sigmoid(visibility) > threshold, the occlusion estimate alone.
    """
    if rule not in VISIBILITY_RULES:
        raise ValueError(f"visibility rule must be one of {VISIBILITY_RULES}; received '{rule}'")
    visible = torch.sigmoid(logits[..., 0])
    if rule == "certainty":
        visible = visible * torch.sigmoid(logits[..., 1])
    return visible > threshold
