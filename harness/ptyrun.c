// SPDX-License-Identifier: GPL-2.0
/*
 * ptyrun PROG [ARGS...] - run PROG on a pseudo-terminal and copy what it
 * writes there to standard output; exit as PROG did.
 *
 * The kselftest runner prefixes each test's output with sed, and without
 * a terminal busybox's sed holds it back in 4 KiB blocks. The guest's
 * init reads the runner's output line by line as the tests print it, to
 * write the program and test names into the kernel log; on a terminal
 * sed flushes every line.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void copy_out(int master)
{
	char buf[4096];
	ssize_t n, done, w;

	/* EIO once every holder of the other side has closed it. */
	while ((n = read(master, buf, sizeof(buf))) > 0) {
		for (done = 0; done < n; done += w) {
			w = write(STDOUT_FILENO, buf + done, n - done);
			if (w < 0)
				return;
		}
	}
}

static void run_on(const char *slave_name, char **argv)
{
	struct termios tio;
	int slave;

	setsid();
	slave = open(slave_name, O_RDWR);
	if (slave < 0) {
		perror(slave_name);
		_exit(127);
	}
	/* Lines end in \n, as they would in a pipe. */
	if (!tcgetattr(slave, &tio)) {
		tio.c_oflag &= ~OPOST;
		tcsetattr(slave, TCSANOW, &tio);
	}
	dup2(slave, STDIN_FILENO);
	dup2(slave, STDOUT_FILENO);
	dup2(slave, STDERR_FILENO);
	if (slave > STDERR_FILENO)
		close(slave);
	execvp(argv[0], argv);
	perror(argv[0]);
	_exit(127);
}

int main(int argc, char **argv)
{
	int master, status;
	char *slave_name;
	pid_t pid;

	if (argc < 2) {
		fprintf(stderr, "usage: ptyrun PROG [ARGS...]\n");
		return 2;
	}
	master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master) ||
	    !(slave_name = ptsname(master))) {
		perror("ptyrun: pseudo-terminal");
		return 127;
	}
	pid = fork();
	if (pid < 0) {
		perror("ptyrun: fork");
		return 127;
	}
	if (!pid) {
		close(master);
		run_on(slave_name, argv + 1);
	}
	copy_out(master);
	if (waitpid(pid, &status, 0) < 0)
		return 127;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
