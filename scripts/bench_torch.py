"""bench_torch.py: what a PyTorch user would run for the same sparse MLP on the
CPU, timed per training step, for scripts/bench_cpu_compare.sh.

Network 784-H...-10, Erdos-Renyi masks with epsilon E (p = min(1, E (I + O) /
(I O)), the output layer dense when p >= 1, as settrain), ReLU, dropout 0.3,
softmax cross-entropy, momentum SGD with weight decay, batch B.

  csr:    each sparse layer's weights as a torch sparse CSR tensor (O, I):
          forward torch.sparse.mm(W, a), backward delta with the transposed
          CSR (values gathered through a fixed permutation each step), weight
          gradient by torch.sparse.sampled_addmm at the layer's pattern, the
          update on the CSR values.
  masked: dense weights times a 0/1 mask, autograd, the gradient masked.

Prints one CSV line per mode: mode,network,batch,threads,connections,step_s,
epoch_train_s (step_s x 60000 / B); best of 3 rounds of process CPU time
(--clock cpu, the default, as tests/bench_cpu.c) or wall time. Uses
torch.set_num_threads(T).

  python bench_torch.py --hidden 3000,3000,3000 --batch 128 --threads 1 --steps 20
"""
import argparse
import time

import torch


def er_mask(n_in, n_out, eps, gen):
    p = min(1.0, eps * (n_in + n_out) / (n_in * n_out))
    if p >= 1.0:
        return None, n_in * n_out
    m = torch.rand(n_out, n_in, generator=gen) < p
    return m, int(m.sum())


def he(n_in, n_out, gen):
    lim = (6.0 / n_in) ** 0.5
    return (torch.rand(n_out, n_in, generator=gen) * 2 - 1) * lim


def build(sizes, eps, seed):
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        mask, nnz = er_mask(n_in, n_out, eps, gen)
        w = he(n_in, n_out, gen)
        if mask is not None:
            w = w * mask
        layers.append({"w": w, "mask": mask, "nnz": nnz, "b": torch.zeros(n_out, 1)})
    return layers


def step_csr(layers, x, y, st, lr=0.01, mu=0.9, wd=2e-4, drop=0.3):
    """One training step; x (I, B) feature-major like settrain."""
    B = x.shape[1]
    acts, zs, masks = [x], [], []
    a = x
    n = len(layers)
    for l, L in enumerate(layers):
        if L["mask"] is None:
            z = L["w"] @ a + L["b"]
        else:
            z = torch.sparse.mm(L["csr"], a) + L["b"]
        zs.append(z)
        if l + 1 < n:
            dm = (torch.rand_like(z) >= drop).float() / (1 - drop)
            a = torch.relu(z) * dm
            masks.append(dm)
            acts.append(a)
    p = torch.softmax(zs[-1], dim=0)
    d = p.clone()
    d[y, torch.arange(B)] -= 1
    d /= B
    for l in range(n - 1, -1, -1):
        L = layers[l]
        a_in = acts[l]
        gb = d.sum(dim=1, keepdim=True)
        if L["mask"] is None:
            gw = d @ a_in.t()
            if l > 0:
                d_in = L["w"].t() @ d
        else:
            gcsr = torch.sparse.sampled_addmm(L["zero_csr"], d, a_in.t(), beta=0.0)
            gw = gcsr.values()
            if l > 0:
                wt = torch.sparse_csr_tensor(L["t_crow"], L["t_col"], L["csr"].values()[L["t_perm"]],
                                             size=(L["w"].shape[1], L["w"].shape[0]))
                d_in = torch.sparse.mm(wt, d)
        if l > 0:
            d = d_in * (zs[l - 1] > 0).float() * masks[l - 1]
        # momentum SGD, weight decay on weights only
        if L["mask"] is None:
            st[l]["v"].mul_(mu).add_(gw + wd * L["w"], alpha=-lr)
            L["w"].add_(st[l]["v"])
        else:
            vals = L["csr"].values()
            st[l]["v"].mul_(mu).add_(gw + wd * vals, alpha=-lr)
            vals.add_(st[l]["v"])
        st[l]["vb"].mul_(mu).add_(gb, alpha=-lr)
        L["b"].add_(st[l]["vb"])


def prep_csr(layers):
    st = []
    for L in layers:
        s = {"vb": torch.zeros_like(L["b"])}
        if L["mask"] is None:
            s["v"] = torch.zeros_like(L["w"])
        else:
            L["csr"] = L["w"].to_sparse_csr()
            L["zero_csr"] = torch.sparse_csr_tensor(L["csr"].crow_indices(), L["csr"].col_indices(),
                                                    torch.zeros_like(L["csr"].values()),
                                                    size=L["w"].shape)
            # transposed pattern and the permutation from CSR order to it
            idx = torch.arange(L["nnz"], dtype=torch.float32)
            pos = torch.sparse_csr_tensor(L["csr"].crow_indices(), L["csr"].col_indices(), idx,
                                          size=L["w"].shape)
            tp = pos.to_dense().t().contiguous()
            mt = L["mask"].t().contiguous()
            tvals = tp[mt]
            tc = mt.float().to_sparse_csr()
            L["t_crow"], L["t_col"] = tc.crow_indices(), tc.col_indices()
            L["t_perm"] = tvals.long()
            s["v"] = torch.zeros(L["nnz"])
        st.append(s)
    return st


def step_masked(layers, params, opt, x, y, drop=0.3):
    a = x.t()  # (B, I): the usual PyTorch layout
    n = len(layers)
    for l, L in enumerate(layers):
        w = params[l][0] if L["mask"] is None else params[l][0] * L["maskf"]
        a = a @ w.t() + params[l][1]
        if l + 1 < n:
            a = torch.nn.functional.dropout(torch.relu(a), drop, training=True)
    loss = torch.nn.functional.cross_entropy(a, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", default="3000,3000,3000")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--dense-steps", type=int, default=5)
    ap.add_argument("--epsilon", type=float, default=20)
    ap.add_argument("--modes", default="csr,masked")
    ap.add_argument("--clock", default="cpu", choices=["cpu", "wall"],
                    help="process CPU time (one thread on a shared machine) or wall clock")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    sizes = [784] + [int(h) for h in args.hidden.split(",")] + [10]
    net = "-".join(str(s) for s in sizes)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(784, args.batch, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    for mode in args.modes.split(","):
        layers = build(sizes, args.epsilon, 1)
        conn = sum(L["nnz"] for L in layers)
        if mode == "csr":
            st = prep_csr(layers)
            run = lambda: step_csr(layers, x, y, st)
            steps = args.steps
        else:
            params = []
            for L in layers:
                if L["mask"] is not None:
                    L["maskf"] = L["mask"].float()
                params.append((L["w"].clone().requires_grad_(True),
                               L["b"].t().clone().requires_grad_(True)))
            opt = torch.optim.SGD([p for pr in params for p in pr], lr=0.01, momentum=0.9,
                                  weight_decay=2e-4)
            run = lambda: step_masked(layers, params, opt, x, y)
            steps = args.dense_steps
        run()  # warm up
        best = None
        for _ in range(3):
            t0 = clock()
            for _ in range(steps):
                run()
            t = (clock() - t0) / steps
            best = t if best is None or t < best else best
        print("%s,%s,%d,%d,%d,%.6f,%.3f" % (mode, net, args.batch, args.threads, conn, best,
                                            best * 60000 / args.batch), flush=True)


if __name__ == "__main__":
    main()
