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
 *         When featpkg exited 0, before that: the admin's selection (below).
 *
 * <jobdir> is created (0700) by the page; nothing here comes from a request.
 *
 * The admin's selection: after a change that succeeded, the runner runs
 * `featpkg status --json` (the command in <jobdir>/selection.json: the page's
 * own status command line) and writes this bundle's installed features to
 * the page's data directory as featpkg-features.json (temp file + rename,
 * 0600), which the module hooks install on the next enable or upgrade
 * (FeatpkgRunner::FEATURES_FILE). Why here and not in the page: the runner
 * runs exactly once per job and does this while it still holds <jobdir>/lock
 * and before <jobdir>/exit exists, so the job still counts as running and
 * the page starts no second change until the file is written (no race); it
 * does not depend on the page being open when the job ends. A job whose
 * featpkg failed leaves the file alone. If the change succeeded but the
 * status cannot be read or the file not written, the old file (now wrong) is
 * deleted, so the hooks fall back to featpkg's default, and the job fails
 * with a message saying so.
 */

declare(strict_types=1);

if (PHP_SAPI !== 'cli') {
    // Not a web page.
    http_response_code(404);
    exit;
}

require_once dirname(__DIR__) . '/Lib/FeatpkgRunner.php';
require_once dirname(__DIR__) . '/Lib/FeatpkgPage.php';

use Modules\ModuleFeatpkg\Lib\FeatpkgRunner;

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

/**
 * After a change that succeeded: records which of the bundle's features are
 * installed (see the top of this file). Returns null, or why it could not.
 */
function featpkg_job_record_selection(string $dir): ?string
{
    if (!is_file($dir . '/selection.json')) {
        // A job started by an older page: nothing to record.
        return null;
    }
    $selection = json_decode((string) @file_get_contents($dir . '/selection.json'), true);
    $command = is_array($selection) ? ($selection['status'] ?? null) : null;
    $bundle = is_array($selection) ? ($selection['bundle'] ?? null) : null;
    $file = is_array($selection) ? ($selection['file'] ?? null) : null;
    $valid = is_array($command) && $command !== [] && array_keys($command) === range(0, count($command) - 1)
        && is_string($bundle) && $bundle !== '' && is_string($file) && ($file[0] ?? '') === '/';
    foreach ($valid ? $command : [] as $word) {
        if (!is_string($word)) {
            $valid = false;
        }
    }
    if (!$valid) {
        return "$dir/selection.json is not {\"status\": [command], \"bundle\": name, \"file\": path}";
    }
    try {
        $stdout = tmpfile();
        $stderr = tmpfile();
        if ($stdout === false || $stderr === false) {
            throw new RuntimeException("cannot create temporary files for featpkg's output");
        }
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => $stdout, 2 => $stderr], $pipes, '/');
        if (!is_resource($process)) {
            throw new RuntimeException('cannot start ' . $command[0]);
        }
        $code = proc_close($process);
        rewind($stdout);
        rewind($stderr);
        $out = (string) stream_get_contents($stdout);
        $err = trim((string) stream_get_contents($stderr));
        if ($code !== 0) {
            throw new RuntimeException("featpkg status failed (exit $code)" . ($err !== '' ? ": $err" : ''));
        }
        FeatpkgRunner::replaceFile($file, FeatpkgRunner::featuresFileText(FeatpkgRunner::installedFeatures($out, $bundle)));
        return null;
    } catch (Throwable $e) {
        $removed = !file_exists($file) || @unlink($file);
        return sprintf(
            'the change was made, but which features are installed could not be recorded in %s (%s); %s',
            $file,
            $e->getMessage(),
            $removed
                ? 'the file was removed, so the next module enable or upgrade installs every feature: apply from this page again to record your selection'
                : 'nor could the old file be removed: delete it by hand, or the next module enable or upgrade installs what it lists'
        );
    }
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
if ($code === 0) {
    $problem = featpkg_job_record_selection($dir);
    if ($problem !== null) {
        featpkg_job_fail($dir, $problem, 1);
    }
}
featpkg_job_finish($dir, $code);
