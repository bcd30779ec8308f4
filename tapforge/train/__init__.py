"""Lightning training of TAPIR on synthetic WebDataset shards.

Modules: ``shards`` (shard lists, opening, corrupt-shard handling), ``sampling`` (sub-clips and
query points, numpy), ``data`` (the LightningDataModule), ``augment`` (batched sim2real
augmentation on the device), ``evaluation`` (TAP-Vid and held-out synthetic validation sets and
metric accumulation), ``optim`` (AdamW groups and the warmup-cosine schedule), ``module`` (the
LightningModule), ``overlays`` (track videos for the loggers), ``cli`` (``tapforge train``) and
``photo_clips`` (real photos moved by known homographies as TAP-Vid clips, numpy; ``tapforge photo-clips``).
Importing this package imports nothing heavy; import the submodules you need.
"""
