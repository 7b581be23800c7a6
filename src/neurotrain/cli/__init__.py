"""The ``neurotrain`` command: one module per command, each with ``add(subparsers)`` and the function it runs.

    neurotrain train RECIPE.yaml [key=value ...]          (also: accelerate launch -m neurotrain train ...)
    neurotrain train --model_config M --dataset_configs_path P --store_dir S [--legacy flags]
    neurotrain ensemble RECIPE.yaml --members K [--by seed|kfold] [key=value ...]
    neurotrain sweep RECIPE.yaml --grid KEY=a,b [--grid ...] [--random N] [--slurm] | --resume/--report SWEEP_DIR
    neurotrain validate RECIPE.yaml|MODEL.yaml
    neurotrain ingest npz|cowley-v4|allen-v1 ...
    neurotrain convert LEGACY.ckpt OUT/
    neurotrain export-legacy MODEL OUT.ckpt
    neurotrain predict MODEL --inputs IN.safetensors --out OUT.safetensors
    neurotrain evaluate CHECKPOINT --data RECIPE.yaml
    neurotrain insilico MODEL --experiment mei|gratings|rf|size|contrast --session S --out DIR
    neurotrain noise-ceiling RESPONSES.npy --out DIR

Bad input (a :class:`~neurotrain.errors.NeurotrainError`: a recipe key, a file, a checkpoint, a flag) stops with
one line naming the file and the key, and exit code 2.

Exit codes:

==== ==========================================================================================================
0    done (also a run stopped by SIGTERM/SIGUSR1 after saving its resumable state: start it again to resume)
1    an unexpected error (a Python traceback: a bug to report); under ``accelerate launch`` with N processes,
     also what the launcher returns when any process exited with a code other than 0
2    bad input: one line naming the file and the key
74   a save failed (a full disk, a quota, a file system that refuses writes): one line naming the path, the
     free space, the size the save needed and the command that resumes; what was saved before is intact
     (:class:`~neurotrain.errors.SaveError`; ``checkpoint.on_save_error``). Other commands that cannot write
     their output for lack of space (ENOSPC, EDQUOT) also exit with 74.
==== ==========================================================================================================
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings

from neurotrain.cli import convert, ensemble, evaluate, export, ingest, insilico, predict, sweep, train, validate
from neurotrain.errors import ConfigError, NeurotrainError
from neurotrain.legacy.cli import WantsHelp, is_legacy
from neurotrain.errors import SaveError
from neurotrain.io import format_bytes, free_bytes, write_errno


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", 122)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurotrain", description="Train multi-session digital twins of visual cortex.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (train, ensemble, sweep, validate, ingest, convert, export, predict, evaluate, insilico):
        command.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Legacy-compatibility aliases warn with DeprecationWarning: show them to command-line users.
    warnings.filterwarnings("default", category=DeprecationWarning, module=r"neurotrain\.")
    argv = sys.argv[1:] if argv is None else list(argv)
    legacy = argv[:1] == ["train"] and is_legacy(argv[1:])  # `neurotrain train --model_config ...`
    args = None if legacy else build_parser().parse_args(argv)
    command = "train" if legacy else args.command
    try:
        return train.run_legacy(argv[1:]) if legacy else args.func(args)
    except WantsHelp:
        build_parser().parse_args(["train", "--help"])  # the train help, legacy flags included; exits 0
        return 0
    except NeurotrainError as err:
        if getattr(err, "quiet", False):  # the other processes of a run: the main process says it
            return err.exit_code
        what = "configuration" if isinstance(err, ConfigError) else command
        if legacy and not isinstance(err, ConfigError):
            print(f"neurotrain train: error: {err}", file=sys.stderr)
        else:
            print(f"neurotrain: {what} error: {' '.join(str(err).split())}", file=sys.stderr)
        return err.exit_code
    except FileExistsError as err:  # a session or model folder that is there already (no --overwrite)
        print(f"neurotrain: {command} error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an output the file system refuses (outside a training run's saves)
        if err.errno not in _NO_SPACE:
            raise
        where = err.filename or "the output"
        print(f"neurotrain: {command} error: {where}: could not be written: {err.strerror} "
              f"({format_bytes(free_bytes(where)) if err.filename else 'unknown'} free on its file system); "
              "free space and run the command again", file=sys.stderr)
        return SaveError.exit_code
    except Exception as err:  # torch.save (RuntimeError), safetensors (SafetensorError): the errno only in their text
        if write_errno(err) not in _NO_SPACE:
            raise
        print(f"neurotrain: {command} error: an output could not be written: {' '.join(str(err).split())}; "
              "free space and run the command again", file=sys.stderr)
        return SaveError.exit_code
