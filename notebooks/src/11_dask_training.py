# %% [markdown]
# # 11 · Training on Dask: one loop, NumPy in memory or a cluster over data larger than memory
#
# autodiffx's rules are NumPy code, and NumPy hands them to Dask when the data is a
# `dask.array`: the forward pass and the gradients become lazy task graphs, `ad.compute`
# evaluates the loss and the gradients together, and the parameters (small NumPy arrays)
# are updated by an ordinary autodiffx optimizer (`docs/backends.md`).
#
# Below, **one training loop** (a small MLP classifier, Adam, minibatches) runs first on
# NumPy arrays in memory, then unchanged on a `dask.distributed` `LocalCluster` of two
# worker processes, each limited to 250 MB, over a data set of 2.6 GB: ten times one worker's
# memory, five times the whole cluster's. The data never comes to this process (the client):
# each chunk is made on a worker from a seed and the chunk's index (a stand-in for reading it
# from files, as `da.from_zarr` would), used there, and dropped; only the loss and the
# gradients (a few hundred numbers) come back at each step.

# %%
import logging
import time

import dask.array as da
import distributed
import matplotlib.pyplot as plt
import numpy as np
import psutil
from dask.utils import key_split
from distributed.diagnostics import MemorySampler

import autodiffx as ad
import autodiffx.nn.functional as F

D, H = 64, 8  # features, hidden units
ROWS = 2**14  # rows per chunk: 8.4 MB of X and 0.1 MB of labels
BATCH = 16 * ROWS  # a minibatch: sixteen chunks, eight per worker
MB = 1e6
rng0 = np.random.default_rng(0)
MIX = rng0.normal(size=(16, D)) / 2  # 64 correlated features from 16 uniform sources
TEACHER = (rng0.normal(size=(D, 4)) / 8, 2 * rng0.normal(size=4))  # the labels' hidden rule


def make_chunk(seed, index, rows=ROWS):
    """Chunk ``index`` of the data set: features X and 0/1 labels y, one float64 array of
    shape (rows, D + 1), the same wherever and whenever it is made. (Column-major, so that
    X and y are contiguous pieces of it.)"""
    rng = np.random.default_rng([seed, index])
    out = np.empty((rows, D + 1), order="F")
    X = np.matmul(rng.random((rows, 16)) - 0.5, MIX, out=out[:, :D])
    u = rng.random(rows)
    logit = np.tanh(X @ TEACHER[0]) @ TEACHER[1] + np.log(u / (1 - u))  # + logistic noise
    out[:, D] = logit > 0
    return out


# %% [markdown]
# ## The loop
#
# `train` takes the data as arrays of either kind and steps through it in minibatches. Its
# only Dask-aware line is `ad.compute(loss, *grads)`: on NumPy tensors it returns them as
# they are; on Dask-backed ones it evaluates the loss and all the gradients in one pass over
# the minibatch's chunks and returns NumPy tensors, which become the `.grad`s that Adam
# reads.


# %%
def init_params():
    rng = np.random.default_rng(1)
    shapes = [(D, H), (H,), (H, 1), (1,)]
    scale = [D**-0.5, 0.0, H**-0.5, 0.0]
    return [ad.tensor(rng.normal(size=s) * c, requires_grad=True) for s, c in zip(shapes, scale)]


def model_loss(X, y, w1, b1, w2, b2):
    logits = (ad.tanh(X @ w1 + b1) @ w2 + b2)[:, 0]
    return F.binary_cross_entropy_with_logits(logits, y)


def train(XY, params, batch, on_step=None):
    """One epoch of minibatch Adam over the rows of ``XY`` (NumPy or Dask); the losses."""
    opt = ad.optim.Adam(params, lr=0.02)
    losses = []
    for start in range(0, XY.shape[0], batch):
        rows = XY[start : start + batch]
        opt.zero_grad()
        loss = model_loss(ad.asarray(rows[:, :D]), ad.asarray(rows[:, D]), *params)
        loss.backward()
        loss, *grads = ad.compute(loss, *[p.grad for p in params])
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(loss)
    return losses


# %% [markdown]
# ## NumPy, in memory
#
# The first 32 chunks (524 k rows, 273 MB), made here and trained on in minibatches of
# sixteen chunks (262 144 rows).

# %%
SEED = 17
t0 = time.perf_counter()
XY_mem = np.concatenate([make_chunk(SEED, i) for i in range(32)])
params_np = init_params()
losses_np = train(XY_mem, params_np, batch=BATCH)
print(f"NumPy: {len(losses_np)} steps on {XY_mem.nbytes / MB:.0f} MB in "
      f"{time.perf_counter() - t0:.1f} s, losses {np.round(losses_np, 4)}")  # fmt: skip
del XY_mem

# %% [markdown]
# ## Dask, on a cluster, over 2.6 GB
#
# Two worker processes with one thread each (this machine has two cores) and a memory limit
# of 250 MB each: a worker pauses at 80 % of it and is restarted at 95 %. The data set is a
# Dask array of 304 chunks that exist nowhere yet: `da.map_blocks` makes a graph of one small
# task per chunk (a seed and an index). `XY[start : start + batch]` picks sixteen chunks, and
# each step's graph makes them, runs the forward and backward pass on each chunk on the
# worker that made it, and sums the gradients.

# %%
LIMIT = 250 * MB
N_CHUNKS = 304
cluster = distributed.LocalCluster(
    n_workers=2,
    threads_per_worker=1,
    processes=True,
    memory_limit=LIMIT,
    dashboard_address=":0",
    silence_logs=logging.CRITICAL,  # (the workers' memory warnings: the figures show it)
)
client = distributed.Client(cluster)


def block(block_info=None):
    return make_chunk(SEED, block_info[None]["chunk-location"][0])


chunks = ((ROWS,) * N_CHUNKS, (D + 1,))
XY = da.map_blocks(block, chunks=chunks, dtype=np.float64, meta=np.empty((0, 0)))
print(f"the data set: {XY.nbytes / MB:.0f} MB, {XY.nbytes / LIMIT:.1f} x a worker's memory "
      f"limit, in {XY.numblocks[0]} chunks of {XY.nbytes / N_CHUNKS / MB:.0f} MB")  # fmt: skip

# %% [markdown]
# The same `train`, on the Dask array. While it runs, the scheduler samples the workers'
# memory, the task stream records every task (which worker thread ran it, from when to
# when), and this process's resident memory is read after each step.

# %%
client_rss = [psutil.Process().memory_info().rss]
params_dask = init_params()
sampler = MemorySampler()
t0 = time.perf_counter()
with (
    distributed.get_task_stream(client) as stream,
    sampler.sample("process", measure="process", interval=0.1),
    sampler.sample("managed", measure="managed", interval=0.1),
):
    losses_dask = train(
        XY,
        params_dask,
        batch=BATCH,
        on_step=lambda _: client_rss.append(psutil.Process().memory_info().rss),
    )
seconds = time.perf_counter() - t0


def peak_rss():
    """The worker process's peak resident memory (Linux's VmHWM; ``getrusage`` would count
    the memory of the process that started it, inherited through ``fork``)."""
    with open("/proc/self/status") as f:
        return next(int(v.split()[1]) * 1024 for v in f if v.startswith("VmHWM:"))


worker_peaks = client.run(peak_rss)
print(f"Dask: {len(losses_dask)} steps over {XY.nbytes / MB:.0f} MB in {seconds:.1f} s "
      f"({XY.nbytes / MB / seconds:.0f} MB/s), {len(stream.data)} tasks")  # fmt: skip
print("workers' peak resident memory:", [f"{p / MB:.0f} MB" for p in worker_peaks.values()])
print(f"client's resident memory: {client_rss[0] / MB:.0f} MB before, "
      f"at most {max(client_rss) / MB:.0f} MB during the epoch")  # fmt: skip

# %% [markdown]
# The first two steps saw the same minibatches as the NumPy run, from the same starting
# parameters: the losses are the same to 1e-12. The rest of the epoch is data NumPy never
# held; the loss keeps falling, and the trained model classifies fresh data (a chunk that is
# not in the data set).

# %%
np.testing.assert_allclose(losses_dask[:2], losses_np, rtol=1e-12)
held_out = make_chunk(SEED, 10**6)
Xh, yh = ad.tensor(held_out[:, :D]), held_out[:, D]


def accuracy(w1, b1, w2, b2):
    with ad.no_grad():
        predicted = ((ad.tanh(Xh @ w1 + b1) @ w2 + b2)[:, 0] > 0).data
    return float(np.mean(predicted == yh))


acc_np, acc_dask = accuracy(*params_np), accuracy(*params_dask)
print(f"held-out accuracy: {acc_np:.3f} after the 2 NumPy steps, {acc_dask:.3f} after the epoch")
print("losses:", np.round(losses_dask, 3))

assert XY.nbytes >= 10 * LIMIT
assert max(worker_peaks.values()) < LIMIT  # no worker reached its limit (nor was restarted)
assert max(client_rss) - client_rss[0] < 50 * MB  # the 2.6 GB never came to the client
assert np.mean(losses_dask[-5:]) < 0.8 * np.mean(losses_dask[:2])
assert acc_dask > max(0.75, acc_np + 0.03)

fig, ax = plt.subplots(figsize=(8, 3.4), layout="constrained")
ax.plot(losses_dask, ".-", color="C0", label="Dask, 2.6 GB on the cluster")
ax.plot(losses_np, "o", color="C1", mfc="none", ms=9, label="NumPy, the first 273 MB")
ax.set(xlabel="step (16 chunks, 262 144 rows)", ylabel="loss (binary cross-entropy)")
ax.set_title("one epoch of minibatch Adam: the same loop on NumPy and on Dask")
ax.legend(loc="upper right")

# %% [markdown]
# ## The task stream
#
# Dask's dashboard draws the *task stream*: one row per worker thread, one bar per task from
# its start to its end, coloured by the task's prefix (the function it runs). The dashboard
# needs `bokeh`, which is not installed here, so we draw the same picture with matplotlib
# from `client.get_task_stream()`'s records (here through the `get_task_stream` context
# manager). Each minibatch's tasks run on both workers at once (eight chunks each), then the
# client waits for the step's small result and sends the next step's graph: the gaps.

# %%
threads = sorted({(rec["worker"], rec["thread"]) for rec in stream.data})
bars = {}  # (kind, row) -> [(start, duration)]
for rec in stream.data:
    row = threads.index((rec["worker"], rec["thread"]))
    for ss in rec["startstops"]:
        kind = key_split(rec["key"]) if ss["action"] == "compute" else ss["action"]
        bars.setdefault((kind, row), []).append((ss["start"], ss["stop"] - ss["start"]))
t_start = min(s for b in bars.values() for s, _ in b)
busy = {}
for (kind, _), b in bars.items():
    busy[kind] = busy.get(kind, 0.0) + sum(d for _, d in b)
kinds = sorted(busy, key=lambda k: -busy[k])
compute = sum(v for k, v in busy.items() if k not in ("transfer", "disk-read", "disk-write"))
print(f"the workers computed for {compute:.1f} s of 2 x {seconds:.1f} s; by task prefix:")
print(", ".join(f"{k} {busy[k]:.1f} s" for k in kinds[:8]))
fig, axes = plt.subplots(2, 1, figsize=(10, 6), layout="constrained", height_ratios=[2, 1])
ax = axes[0]
for i, kind in enumerate(kinds):
    color = "red" if kind == "transfer" else plt.cm.tab20(i % 20)
    for row in range(len(threads)):
        spans = [(s - t_start, d) for s, d in bars.get((kind, row), [])]
        ax.broken_barh(spans, (row - 0.4, 0.8), color=color)
    ax.bar(0, 0, color=color, label=kind if i < 8 else None)
ax.set_yticks(range(len(threads)), [f"{w}\nthread {t % 1000:03d}" for w, t in threads])
ax.set(xlabel="seconds since the first task", title="task stream (as Dask's dashboard draws it)")
ax.set_ylim(len(threads) - 0.5, -1.5)  # (inverted, as the dashboard; room for the legend)
ax.legend(ncol=4, fontsize=8, loc="upper center")

ax = axes[1]
for name, color in (("process", "C0"), ("managed", "C2")):
    ts = np.array(sampler.samples[name])
    ax.plot(ts[:, 0] - ts[0, 0], ts[:, 1] / MB, color=color, label=f"{name} memory")
ax.axhline(2 * LIMIT / MB, color="k", ls="--", label="the two workers' limits")
ax.set(xlabel="seconds", ylabel="MB, both workers", ylim=(0, 2.4 * LIMIT / MB))
ax.set_title(f"cluster memory while {XY.nbytes / MB:.0f} MB stream through")
ax.legend(ncol=3, fontsize=8, loc="upper right")

# %% [markdown]
# *Process* memory is what the operating system counts for the worker processes (Python,
# NumPy and Dask themselves take about 80 MB each); *managed* memory is the chunks and
# results Dask holds. Neither grows with the data: each chunk is made, used and dropped
# within its step.

# %%
client.close()
cluster.close()
