<?php
/*
 * featpkg settings page: runs one change (a "job") in the background, so the
 * page's HTTP request can answer at once and poll (Lib/FeatpkgPage.php).
 *
 *     php -f featpkg-job.php -- <jobdir>
 *         starts the runner below in its own session (setsid) with no
 *         descriptor of its caller, and returns at once (exit 0 = started)
 *     php -f featpkg-job.php -- --run <jobdir>
 *         the runner: holds <jobdir>/lock while it lives, writes its pid to
 *         <jobdir>/pid, runs the command in <jobdir>/argv.json (a JSON array:
 *         the featpkg binary, then its arguments; proc_open with that array,
 *         no shell), featpkg's stdout into <jobdir>/stdout, its stderr into
 *         <jobdir>/stderr as it comes, each `featpkg: progress <step>` line's
 *         step into <jobdir>/steps, and last its exit code into <jobdir>/exit.
 *
 * <jobdir> is created (0700) by the page; nothing here comes from a request.
 */

declare(strict_types=1);

if (PHP_SAPI !== 'cli') {
    // Not a web page.
    http_response_code(404);
    exit;
}

require_once dirname(__DIR__) . '/Lib/FeatpkgPage.php';

/** Ends the job: its exit code in <jobdir>/exit (written whole: temp + rename). */
function featpkg_job_finish(string $dir, int $code): void
{
    $tmp = $dir . '/.exit.' . getmypid();
    if (@file_put_contents($tmp, $code . "\n") === false || !@rename($tmp, $dir . '/exit')) {
        fwrite(STDERR, "featpkg-job: cannot write $dir/exit\n");
        exit(1);
    }
    exit(0);
}

/** Records a message of the runner itself as the job's error. */
function featpkg_job_fail(string $dir, string $message, int $code): void
{
    @file_put_contents($dir . '/stderr', "featpkg-job: $message\n", FILE_APPEND);
    featpkg_job_finish($dir, $code);
}

$args = array_slice($argv, 1);
$run = ($args[0] ?? '') === '--run';
if ($run) {
    array_shift($args);
}
if (count($args) !== 1) {
    fwrite(STDERR, "usage: php -f featpkg-job.php -- [--run] <jobdir>\n");
    exit(2);
}
$dir = rtrim($args[0], '/');
if ($dir === '' || $dir[0] !== '/' || !is_dir($dir) || !is_file($dir . '/argv.json')) {
    fwrite(STDERR, "featpkg-job: $dir is not a job directory\n");
    exit(2);
}
umask(0077);

if (!$run) {
    // Start the runner detached: its own session, none of our descriptors,
    // and not our child for long (we exit now), so nothing waits for it.
    $command = [PHP_BINARY, '-f', __FILE__, '--', '--run', $dir];
    foreach (['/usr/bin/setsid', '/bin/setsid', '/usr/sbin/setsid', '/sbin/setsid'] as $setsid) {
        if (is_file($setsid) && is_executable($setsid)) {
            array_unshift($command, $setsid);
            break;
        }
    }
    $spec = \Modules\ModuleFeatpkg\Lib\FeatpkgPage::detachedDescriptors($dir . '/runner.log');
    $process = proc_open($command, $spec, $pipes, '/');
    if (!is_resource($process)) {
        fwrite(STDERR, 'featpkg-job: cannot start ' . $command[0] . "\n");
        exit(1);
    }
    // No proc_close: the runner goes on after we exit.
    exit(0);
}

// ---- the runner -------------------------------------------------------------

if (function_exists('posix_setsid')) {
    @posix_setsid();
}
$lock = @fopen($dir . '/lock', 'c');
if ($lock === false || !flock($lock, LOCK_EX | LOCK_NB)) {
    fwrite(STDERR, "featpkg-job: $dir is running already\n");
    exit(1);
}
if (is_file($dir . '/exit')) {
    fwrite(STDERR, "featpkg-job: $dir has run already\n");
    exit(1);
}
@file_put_contents($dir . '/pid', getmypid() . "\n");

$command = json_decode((string) @file_get_contents($dir . '/argv.json'), true);
$valid = is_array($command) && $command !== [] && array_keys($command) === range(0, count($command) - 1);
foreach ($valid ? $command : [] as $word) {
    if (!is_string($word)) {
        $valid = false;
    }
}
if (!$valid) {
    featpkg_job_fail($dir, "$dir/argv.json is not a JSON array of strings", 127);
}

$stderrLog = @fopen($dir . '/stderr', 'a');
$stepsLog = @fopen($dir . '/steps', 'a');
if ($stderrLog === false || $stepsLog === false) {
    featpkg_job_fail($dir, "cannot write in $dir", 127);
}
$spec = [
    0 => ['file', '/dev/null', 'r'],
    1 => ['file', $dir . '/stdout', 'w'],
    2 => ['pipe', 'w'],
];
$process = proc_open($command, $spec, $pipes, '/');
if (!is_resource($process)) {
    featpkg_job_fail($dir, 'cannot start ' . $command[0], 127);
}
$steps = \Modules\ModuleFeatpkg\Lib\FeatpkgPage::STEPS;
while (($line = fgets($pipes[2])) !== false) {
    fwrite($stderrLog, $line);
    fflush($stderrLog);
    if (preg_match('/^featpkg: progress (\S+)\s*$/', $line, $m) && in_array($m[1], $steps, true)) {
        fwrite($stepsLog, $m[1] . "\n");
        fflush($stepsLog);
    }
}
fclose($pipes[2]);
$code = proc_close($process);
fclose($stderrLog);
fclose($stepsLog);
featpkg_job_finish($dir, $code);
