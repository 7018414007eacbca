"""Safe media loading: one loader per modality, limits checked before anything large is decoded.

Every failure caused by the input (missing, empty, oversized, corrupt, unsupported) raises
:class:`MediaError`, which names the modality, the item and the reason. http(s) fetching is not
done here: the server fetches behind its own checks and passes bytes or a ``data:`` URI.
"""

from omnifuse.processing.media.audio import load_audio
from omnifuse.processing.media.containers import CONTAINER_FORMATS
from omnifuse.processing.media.errors import MediaError, MediaLimits
from omnifuse.processing.media.images import IMAGE_FORMATS, check_pixels, image_to_rgb, load_image
from omnifuse.processing.media.sequences import load_sequence
from omnifuse.processing.media.sources import read_source_bytes
from omnifuse.processing.media.video import DEFAULT_NUM_FRAMES, load_video, sample_frame_indices

__all__ = [
    "CONTAINER_FORMATS",
    "DEFAULT_NUM_FRAMES",
    "IMAGE_FORMATS",
    "MediaError",
    "MediaLimits",
    "check_pixels",
    "image_to_rgb",
    "load_audio",
    "load_image",
    "load_sequence",
    "load_video",
    "read_source_bytes",
    "sample_frame_indices",
]
