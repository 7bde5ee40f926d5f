"""WorldService: worlds, allocations, apply runs over the ControlBus, promotion guard."""
