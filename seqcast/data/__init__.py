"""Series in: the chapter's synthetic series, M3, files of your own (validated and windowed), scaling and window
normalisation."""
