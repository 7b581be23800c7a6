"""SaveFailure.describe: the text after ``<path>: <what>:`` in a save fault's message.

The reason always starts with the system's words for the errno (``No space left on device``): an ``OSError``'s
text carries them already and is kept as it is; ``torch.save`` and ``safetensors`` raise a ``RuntimeError`` whose
text names only the failed write, and that text follows the system's words in parentheses.
"""

import errno
import os

from neurotrain.checkpoint.faults import SaveFailure, failure_of

MiB = 1024 ** 2
TORCH_REASON = ("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                "data/3: file write failed")


def test_a_torch_save_reason_gets_the_system_words_first(tmp_path):
    f = SaveFailure("resumable state", tmp_path / "step_00000008", errno.ENOSPC, TORCH_REASON,
                    needed=3 * MiB + MiB // 2, free=MiB + MiB // 5)
    assert f.describe() == (f"could not be written: No space left on device ({TORCH_REASON}) (ENOSPC); "
                            "1.2 MiB free on its file system, the save needs about 3.5 MiB")


def test_an_oserror_reason_is_kept_as_it_is(tmp_path):
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "state.pt"))
    f = SaveFailure("resumable state", tmp_path, errno.ENOSPC, str(err), needed=2048, free=0, rank=1)
    assert f.describe() == (f"could not be written: [Errno 28] No space left on device: '{tmp_path / 'state.pt'}' "
                            "(ENOSPC, on process 1); 0 B free on its file system, the save needs about 2.0 KiB")
    assert f.describe().count("No space left on device") == 1


def test_a_multi_line_library_reason_becomes_one_line_and_an_empty_one_the_system_words(tmp_path):
    f = SaveFailure("model folder", tmp_path, errno.EIO, "Error while serializing:\n  write failed\n")
    assert f.describe() == ("could not be written: Input/output error (Error while serializing: write failed) "
                            "(EIO); unknown free on its file system, the save needs about unknown")
    f = SaveFailure("model folder", tmp_path, errno.EIO, "")
    assert f.describe().startswith("could not be written: Input/output error (EIO); ")


def test_a_quota_names_the_quota_commands(tmp_path):
    reason = 'Error while serializing: IoError(Os { code: 122, kind: QuotaExceeded, message: "Disk quota exceeded" })'
    f = SaveFailure("model folder", tmp_path, errno.EDQUOT, reason, needed=MiB, free=10 * MiB)
    text = f.describe()
    assert text.startswith(f"could not be written: {reason} (EDQUOT); 10.0 MiB free on its file system, "
                           "the save needs about 1.0 MiB (a disk quota: ")
    assert "`quota -s`" in text and "`lfs quota -u $USER <mount>`" in text


def test_failure_of_a_torch_save_error_on_a_disk_without_room(tmp_path):
    """torch.save's RuntimeError has no errno: ENOSPC is inferred when the file system has less free than the
    save needed; the message then reads as an OSError's would, the library's words after the system's."""
    f = failure_of(RuntimeError(TORCH_REASON), "resumable state", tmp_path / "step_00000004", needed=1 << 62)
    assert f.errno == errno.ENOSPC and f.free is not None and f.needed == 1 << 62
    assert f.describe().startswith(f"could not be written: No space left on device ({TORCH_REASON}) (ENOSPC); ")
    f = failure_of(RuntimeError(TORCH_REASON), "resumable state", tmp_path / "step_00000004", needed=1)
    assert f.errno == errno.EIO  # room enough: not a full disk
    assert f.describe().startswith(f"could not be written: Input/output error ({TORCH_REASON}) (EIO); ")
    assert failure_of(RuntimeError("shape mismatch"), "resumable state", tmp_path) is None  # a bug, not a fault
