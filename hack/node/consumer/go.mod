module sas-operator.local/consumer

go 1.24
