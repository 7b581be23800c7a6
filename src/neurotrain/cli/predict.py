"""``neurotrain predict MODEL --inputs IN.safetensors --out OUT.safetensors`` (:mod:`neurotrain.predict`)."""

from __future__ import annotations

from neurotrain.cli.convert import legacy_model_args


def run(args) -> int:
    """``neurotrain predict MODEL --inputs IN.safetensors --out OUT.safetensors``."""
    from neurotrain.predict import predict_file

    outputs, meta = predict_file(args.model, args.inputs, args.out, model_config=args.model_config,
                                 dataset_configs=args.dataset_configs, input_shape=args.input_shape,
                                 batch_size=args.batch_size)
    names = [s.get("name") for s in meta.get("sessions", [])]
    for key in sorted(outputs):
        i = int(key.split(".")[1])
        print(f"{key}: {tuple(outputs[key].shape)} ({names[i] if i < len(names) else '?'})")
    print(f"wrote {args.out}")
    return 0



def add(sub) -> None:
    p = sub.add_parser("predict", help="predict rates from a portable folder or a legacy .ckpt",
                       description="Inputs stim.<i> (B, C, L, H, W; normalized), behavior.<i> (B, D; models with a "
                                   "modulator), history.<i> (spike-history models); outputs rhat.<i> (B, N_i): rates "
                                   "after the output activation, no clamp (identity-output models: rhat = "
                                   "exp(output) and output.<i> = the raw log-rate output). Eval mode, float32, "
                                   "no_grad, matmul precision 'highest'. See neurotrain.predict.")
    p.add_argument("model", help="portable model folder or legacy .ckpt")
    p.add_argument("--inputs", required=True, help="safetensors file with stim.<i> / behavior.<i> / history.<i>")
    p.add_argument("--out", required=True, help="safetensors file to write rhat.<i> (and output.<i>) into")
    p.add_argument("--batch-size", type=int, default=256, help="samples per forward (default 256)")
    legacy_model_args(p)
    p.set_defaults(func=run)

