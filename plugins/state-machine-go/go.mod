module weir.dev/state-machine-go

go 1.26

require weir.dev/guest v0.0.0

replace weir.dev/guest => ../../guest-sdk/go
