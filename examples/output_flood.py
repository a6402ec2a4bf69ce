# safe-exec reports: output_limit (exit code 122): killed once stdout passes the output cap, 1 MiB by default.
while True:
    print('A' * 1000)
