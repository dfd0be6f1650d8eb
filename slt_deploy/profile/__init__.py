"""`slt-deploy profile`: what can be measured on this device (latency, throughput, memory, power counters), what is
counted exactly from the NIR graph and real spikes (synaptic operations vs dense MACs), and what is modelled for
hardware we do not have (slt_deploy/hardware/energy/*.yaml, every constant with its public source). See docs/profile.md.

    latency.py   measured: per-frame latency percentiles, throughput, peak memory, RAPL/NVML energy when present
    activity.py  counted:  per-layer spike rates, synaptic ops (events x kept fan-out), dense MACs, neuron updates
    energy.py    modelled: hardware/energy/*.yaml loaded and validated; ops x constants, labelled with sources
    report.py    terminal table, JSON, Markdown, PNG plots (written atomically)
    run.py       the whole profile of a checkpoint and its artifacts (used by the CLI and the demo)
"""
