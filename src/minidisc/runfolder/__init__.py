"""Run folders, the output of every command: a resolved config, a manifest of finished
stages, one atomic folder per stage, recorded output checksums
(:mod:`minidisc.runfolder.run`, :mod:`minidisc.runfolder.outputs`)."""
