"""train.py: trains wan-mini (WanModel from tests/reference/wan_ref.py, exact Wan2.1 architecture,
pixel space) on clips generated on the fly by data.py, within a wall-clock budget.

Objective (Wan / rectified flow): x_s = (1 - s) x0 + s eps, target v = eps - x0, MSE on the model
output at timestep t = 1000 s (float). s is drawn from a mixture: 70 % shifted logit-normal,
s = shift(sigmoid(n)), n ~ N(0, 1), shift(s) = k s / (1 + (k - 1) s), k = --sigma-shift = 5
(so logit(s) ~ N(ln 5, 1)), and --sigma-uniform = 30 % s ~ U(0, 1). Mass: s < 0.6: 26 %,
0.6-0.9: 51 %, > 0.9: 22 %. Why: the sampler (shift 3, 20 steps) takes 6 of its 20 steps at
s > 0.9, where the object is not yet visible and its colour, place and direction must come from
the caption; a first run with k = 3 and 10 % uniform (14 % of samples above 0.9) learned colour
but not direction, and left visible noise (low sigmas too rare).
10 % of captions are dropped to the empty prompt (all-zero context, the unconditional CFG
branch). AdamW, linear warm-up then cosine decay over the planned training TIME, bf16 autocast
on CUDA (RoPE in fp32, see rope_apply_fp32), EMA of the weights (the EMA is shipped).

    python3 models/wan-mini/train/train.py --minutes 7 --out OUT          # GPU, defaults
    python3 models/wan-mini/train/train.py --minutes 0.5 --device cpu --batch 4 --out /tmp/wm  # smoke
    python3 models/wan-mini/train/train.py --minutes 7 --out OUT --resume OUT

--minutes bounds the whole run from process start; the last ~10 s go to the final save. A resumed
run continues its unfinished cosine plan (saved in the checkpoint) unless --total-minutes is given;
resuming a finished plan extends it by --minutes.

Writes into OUT: config.json + diffusion_pytorch_model.safetensors (EMA weights, F32, original key
names: the model), checkpoint.pt (model, EMA, data-generator state, counters) + optimizer.pt
(AdamW state; two files so each stays under 16 MB), both every --ckpt-seconds and at the end with
the two model files, loss.csv (step, loss, lr, seconds), train_summary.json.
Loss curve: cd models/wan-mini/training && gnuplot ../train/loss.gp (loss.csv -> loss.png).
"""
import argparse
import csv
import json
import math
import os
import sys
import time

T_START = time.time()

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import data  # noqa: E402
import modelio  # noqa: E402

NO_DECAY = ("bias", "modulation", "norm", "embedding")   # names kept out of weight decay


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(modelio.ROOT, "out", "wan-mini"), help="output folder")
    ap.add_argument("--minutes", type=float, default=7.0, help="wall-clock budget of this run (from process start)")
    ap.add_argument("--total-minutes", type=float, help="length of the whole LR plan (default: this run, or the resumed plan)")
    ap.add_argument("--resume", help="output folder (checkpoint.pt + optimizer.pt) to continue from")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (2e-3: the shipped weights; 1e-3 learned direction too, 95 %% vs 98 %%)")
    ap.add_argument("--min-lr-frac", type=float, default=0.05, help="final LR as a fraction of --lr")
    ap.add_argument("--warmup", type=int, default=300, help="linear warm-up steps")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay (warmed up as (1+n)/(10+n))")
    ap.add_argument("--p-uncond", type=float, default=0.1, help="caption dropout to the empty prompt")
    ap.add_argument("--sigma-shift", type=float, default=5.0,
                    help="shift applied to the logit-normal sigmas (1 = SD3's plain logit-normal(0, 1))")
    ap.add_argument("--sigma-uniform", type=float, default=0.3, help="fraction of sigmas drawn uniformly")
    ap.add_argument("--chunk", type=int, default=16, help="batches rendered per data-generator call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-seconds", type=float, default=60.0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--bf16", type=int, choices=(0, 1), help="bf16 autocast (default: on for CUDA)")
    ap.add_argument("--compile", type=int, choices=(0, 1), default=0, help="torch.compile the model (torch 2.x; costs start-up time; not yet measured)")
    ap.add_argument("--fast-rope", type=int, choices=(0, 1), default=1,
                    help="apply RoPE in fp32 instead of wan_ref's fp64 while training (inference unchanged)")
    ap.add_argument("--steps", type=int, default=20, help="config.json default sampling steps")
    ap.add_argument("--shift", type=float, default=3.0, help="config.json default sampling shift")
    ap.add_argument("--guidance", type=float, default=5.0, help="config.json default CFG scale")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = time only)")
    ap.add_argument("--trail", default=",".join(str(v) for v in data.TRAIL),
                    help="motion-trail opacities, copies 1, 2, ... frames behind each object "
                         "(recipe v3 default 0.45,0.2; 'none' = no trail, recipes v1/v2)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0 = torch's default)")
    return ap.parse_args(argv)


class ClipStream:
    """Yields (x0 [B,3,F,H,W], ids [B,text_len]) on the device. Renders --chunk batches per call
    so the host-to-device copies (which synchronise) happen once per chunk, not every step."""

    def __init__(self, seed, batch, chunk, device, trail=None):
        self.gen = data.ClipGenerator(seed=seed, captions=False)
        self.batch, self.chunk, self.device, self.trail = batch, chunk, device, trail
        self.buf, self.pos = None, 0

    def next(self):
        if self.buf is None or self.pos >= self.chunk:
            p = self.gen.sample(self.batch * self.chunk)
            x = data.render(p, self.device, trail=self.trail)
            self.buf = (x, torch.as_tensor(p["ids"], device=self.device))
            self.pos = 0
        s = slice(self.pos * self.batch, (self.pos + 1) * self.batch)
        self.pos += 1
        return self.buf[0][s], self.buf[1][s]

    def state(self):
        return {"rng": self.gen.rng.bit_generator.state}

    def load(self, st):
        self.gen.rng.bit_generator.state = st["rng"]


def sample_sigma(n, shift, p_uniform, device, gen):
    s = torch.sigmoid(torch.randn(n, device=device, generator=gen))
    s = shift * s / (1 + (shift - 1) * s)
    u = torch.rand(n, device=device, generator=gen)
    pick = torch.rand(n, device=device, generator=gen) < p_uniform
    return torch.where(pick, u, s).clamp(1e-4, 1.0)


def lr_at(step, progress, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(max(progress, 0.0), 1.0)
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def ema_update(ema, params, decay):
    if hasattr(torch, "_foreach_lerp_"):
        torch._foreach_lerp_(ema, params, 1.0 - decay)
    else:
        for e, p in zip(ema, params):
            e.mul_(decay).add_(p, alpha=1.0 - decay)


def rope_apply_fp32(x, angles):
    """wan_ref.rope_apply with fp32 arithmetic (angles, or their (cos, sin), still fp64; one function
    for both): same rotation, rounding differs by ~1e-7 relative, far below bf16 autocast noise;
    training speed only."""
    return modelio.wan_ref.rope_apply(x, angles, dtype=torch.float32)


def _atomic_save(obj, path):
    torch.save(obj, path + ".tmp")
    os.replace(path + ".tmp", path)


def main(argv=None):
    a = parse_args(argv)
    trail = () if a.trail == "none" else tuple(float(v) for v in a.trail.split(","))  # summary "trail"; args: the flag as given
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    bf16 = bool(a.bf16) if a.bf16 is not None else cuda
    os.makedirs(a.out, exist_ok=True)
    deadline = T_START + a.minutes * 60.0 - (10.0 if a.minutes >= 1 else 2.0)
    torch.manual_seed(a.seed)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    cj = modelio.config_json(a.steps, a.shift, a.guidance)
    model = modelio.build_model(cj, device=dev, seed=a.seed)
    model.train()
    params = [p for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    n_params = sum(p.numel() for p in params)
    n_dit = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_encoder."))
    decay = [p for n, p in zip(names, params) if p.dim() >= 2 and not any(k in n for k in NO_DECAY)]
    no_decay = [p for n, p in zip(names, params) if not (p.dim() >= 2 and not any(k in n for k in NO_DECAY))]
    opt_kw = {"fused": True} if cuda and "fused" in torch.optim.AdamW.__init__.__code__.co_varnames else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.99), eps=1e-8, **opt_kw)
    ema = [p.detach().clone().float() for p in params]
    stream = ClipStream(a.seed + 1, a.batch, a.chunk, dev, trail)
    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed + 2)

    step, trained_s, plan_s, wall_before = 0, 0.0, None, 0.0
    if a.resume:
        folder = a.resume if os.path.isdir(a.resume) else os.path.dirname(a.resume)
        path = os.path.join(folder, "checkpoint.pt")
        ck = torch.load(path, map_location=dev)
        model.load_state_dict(ck["model"])
        for e, t in zip(ema, ck["ema"]):
            e.copy_(t)
        opt.load_state_dict(torch.load(os.path.join(folder, "optimizer.pt"), map_location=dev))
        stream.load(ck["data"])
        gen.manual_seed(a.seed + 2 + ck["step"])
        step, trained_s, plan_s = ck["step"], ck["trained_s"], ck["plan_s"]
        wall_before = ck.get("wall_s", 0.0)
        print(f"resumed {path}: step {step}, {trained_s:.0f}s trained of a {plan_s:.0f}s plan")
    budget_s = max(deadline - time.time(), 1.0)
    if a.total_minutes:
        plan_s = a.total_minutes * 60.0
    elif plan_s is None or trained_s >= plan_s - 1.0:
        plan_s = trained_s + budget_s

    if a.fast_rope:  # this model's attention layers only; the reference module stays as it is
        for m in model.modules():
            if isinstance(m, modelio.wan_ref.WanAttention):
                m.rope_fn = rope_apply_fp32
    fwd = model
    if a.compile and hasattr(torch, "compile"):
        fwd = torch.compile(model)
    attn = modelio.attention_fn(dev)
    mode = "a" if a.resume and os.path.exists(os.path.join(a.out, "loss.csv")) else "w"
    logf = open(os.path.join(a.out, "loss.csv"), mode, newline="")
    log = csv.writer(logf)
    if mode == "w":
        log.writerow(["step", "loss", "lr", "seconds"])
    print(f"wan-mini: {n_params:,} parameters ({n_dit:,} DiT + {n_params - n_dit:,} text encoder), "
          f"device {dev} ({torch.cuda.get_device_name(dev) if cuda else 'cpu'}), torch {torch.__version__}, "
          f"bf16 {bf16}, attention {attn.__name__}, batch {a.batch}, lr {a.lr}, budget {budget_s:.0f}s, "
          f"plan {plan_s:.0f}s, start-up {time.time() - T_START:.1f}s")

    def save(final=False):
        t0 = time.time()
        ema_sd = {n: e for n, e in zip(names, ema)}
        modelio.save_model(a.out, ema_sd, cj)
        _atomic_save(opt.state_dict(), os.path.join(a.out, "optimizer.pt"))
        ck = {"model": model.state_dict(), "ema": ema, "data": stream.state(),
              "step": step, "trained_s": trained_s, "plan_s": plan_s,
              "wall_s": wall_before + time.time() - T_START, "args": vars(a)}
        _atomic_save(ck, os.path.join(a.out, "checkpoint.pt"))
        logf.flush()
        return time.time() - t0

    loss_acc = torch.zeros((), device=dev)
    n_acc, t_log, s_log = 0, time.time(), step
    t_ckpt = time.time()
    t_loop = time.time()
    first_step_s = None
    stop = "time"
    while True:
        now = time.time()
        if now >= deadline:
            break
        if a.max_steps and step >= a.max_steps:
            stop = "max-steps"
            break
        ts = time.time()
        lr = lr_at(step, trained_s / plan_s, a)
        for g in opt.param_groups:
            g["lr"] = lr
        x0, ids = stream.next()
        B = x0.shape[0]
        drop = torch.rand(B, device=dev, generator=gen) < a.p_uncond
        sigma = sample_sigma(B, a.sigma_shift, a.sigma_uniform, dev, gen)
        eps = torch.randn(x0.shape, device=dev, generator=gen)
        s5 = sigma.view(B, 1, 1, 1, 1)
        xt = (1 - s5) * x0 + s5 * eps
        target = eps - x0
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            ctx = modelio.encode_ids(model, ids, drop)
            v = fwd(xt, sigma * 1000.0, ctx, attn_fn=attn)
        loss = torch.mean((v.float() - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.grad_clip)
        opt.step()
        with torch.no_grad():
            ema_update(ema, [p.detach() for p in params], min(a.ema, (1 + step) / (10 + step)))
            loss_acc += loss.detach()
        n_acc += 1
        step += 1
        if first_step_s is None:
            if cuda:
                torch.cuda.synchronize()
            first_step_s = time.time() - ts
        trained_s += time.time() - ts
        if step % a.log_every == 0 or step == 1:
            l = float(loss_acc) / n_acc   # syncs
            el = time.time() - T_START
            log.writerow([step, f"{l:.6f}", f"{lr:.3e}", f"{wall_before + el:.1f}"])  # seconds over all runs
            dt = time.time() - t_log
            sps = (step - s_log) / dt if dt > 0 else 0.0
            print(f"step {step:6d}  loss {l:.4f}  lr {lr:.2e}  {sps:6.2f} steps/s  {sps * B:8.0f} clips/s  "
                  f"t {el:6.1f}s  plan {min(trained_s / plan_s, 1):.0%}", flush=True)
            loss_acc.zero_()
            n_acc, t_log, s_log = 0, time.time(), step
        if time.time() - t_ckpt >= a.ckpt_seconds:
            t_save = save()
            print(f"checkpoint at step {step} ({t_save:.1f}s)", flush=True)
            t_ckpt = time.time()
    if cuda:
        torch.cuda.synchronize()
    loop_s = time.time() - t_loop
    t_save = save(final=True)
    logf.close()
    summary = {"steps": step, "stop": stop, "loop_seconds": round(loop_s, 1), "trained_seconds": round(trained_s, 1),
               "plan_seconds": round(plan_s, 1), "first_step_seconds": round(first_step_s or 0, 2),
               "batch": a.batch, "clips_seen_total": step * a.batch, "trail": list(trail),
               "params": n_params, "params_dit": n_dit, "device": str(dev),
               "gpu": torch.cuda.get_device_name(dev) if cuda else None, "torch": torch.__version__,
               "wall_seconds": round(time.time() - T_START, 1), "args": vars(a)}
    with open(os.path.join(a.out, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"done: {step} steps, {summary['clips_seen_total']:,} clips, loop {loop_s:.0f}s "
          f"({step / max(loop_s, 1e-9):.2f} steps/s), final save {t_save:.1f}s, wall {summary['wall_seconds']}s")
    print(f"wrote {a.out}/config.json, {modelio.WEIGHTS} (EMA), checkpoint.pt, optimizer.pt, loss.csv, train_summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
