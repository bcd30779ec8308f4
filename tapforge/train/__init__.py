"""Lightning training of TAPIR and TAP-Net on synthetic WebDataset shards, and fine-tuning on unlabeled real video.

Modules, by job:

- reading: ``shards`` (shard lists, opening, corrupt-shard handling), ``readers`` (what every training stream does
  per loader reader: its share of the sources and of the epoch, its random streams), ``sampling`` (sub-clips and
  query points, numpy), ``batches`` (the batch type of each stage), ``dataset`` (training examples from a shard sample,
  and a plain torch dataset of them that needs no Lightning), ``data`` (the LightningDataModule and the
  synthetic training stream), ``procedural`` (tiny procedural shards with exact tracks, for tests and benchmarks);
- real video: ``video_sources`` (which videos a source list names; counting and decoding their frames),
  ``real_videos`` (the stream of unlabeled real clips), ``pack_videos`` (videos cut into clips as shards);
- augmentation on the device: ``augment_config`` (settings and their checks), ``draws`` (per-clip random draws),
  ``warp`` (crop windows, flips, resampling of frames and tracks), ``occluders`` (pasted patches),
  ``photometric`` (colour, blur, noise), ``jpeg`` (JPEG-style compression), ``queries`` (query repair after
  augmentation), ``augment`` (``Sim2RealAugment``, all of it in order);
- the model's side: ``optim`` (AdamW groups and the warmup-cosine schedule), ``bootstrap`` (the self-supervised
  BootsTAP loss with an EMA teacher), ``evaluation`` (TAP-Vid and held-out synthetic validation sets and metric
  accumulation), ``module`` (the LightningModule), ``overlays`` (track videos for the loggers), ``callbacks``
  (those ``tapforge train`` always adds);
- ``photo_clips`` (real photos moved by known homographies as TAP-Vid clips, numpy);
- ``cli``: the commands, ``tapforge train`` (LightningCLI), ``tapforge pack-videos`` and ``tapforge photo-clips``.

Importing this package imports nothing heavy; import the submodules you need.
"""
