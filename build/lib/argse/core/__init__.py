"""What every layer of argse uses: the one user-error type, named random streams, atomic files, typed side
files, registries, the console, the figure writer and the torchrun process group."""
