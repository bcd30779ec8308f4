"""tapforge: synthetic point-tracking data, TAPIR training and tracking (see README.md).

One import root: `tapforge.synth` (scenes, ground truth, shards), `tapforge.train` (Lightning training),
`tapforge.tapir` (the models) and `tapforge.base` (errors, atomic writes, video files, drawing; the layer every
package may import). This package itself is the command line (`tapforge.cli`) and the demo.
"""

from tapforge.base import __version__

__all__ = ["__version__"]
