<?php
/*
 * featpkg settings page, server side: shared by MikoPBX (FeatpkgConf::
 * moduleRestAPICallback, runs as root) and FreePBX (Featpkg::ajaxHandler,
 * runs as the web user). It only ROUTES: each action is one featpkg command
 * line; every decision (is a value valid, what changes, may Asterisk restart)
 * is featpkg's.
 *
 * Rules kept here:
 * - actions are an explicit whitelist (a switch on the name); nothing is ever
 *   called by a name that came from a request;
 * - featpkg gets its arguments as an ARRAY (proc_open, no shell), and the
 *   parameters only inside a file readable by this user alone (0600);
 * - feature ids, job ids and the shape of the parameters are checked before
 *   featpkg runs; what they mean is featpkg's to judge;
 * - a change (apply, remove, rollback) runs as a background job, so the HTTP
 *   request answers at once (MikoPBX's REST call times out after 30 s; a
 *   MikoPBX restart can take a minute); the page polls `job`. One job at a
 *   time; featpkg's own lock protects the files anyway. While a job runs,
 *   preview and status answer 409 at once instead of waiting (up to
 *   --lock-wait) for featpkg's lock;
 * - after a job succeeded, its runner records which of the bundle's features
 *   are installed in <data dir>/featpkg-features.json, which the module hooks
 *   install on the next enable or upgrade (FeatpkgRunner::FEATURES_FILE).
 *
 * Loaded by MikoPBX's class loader as Modules\ModuleFeatpkg\Lib\FeatpkgPage,
 * and by FreePBX's Featpkg.class.php with require_once. Keep it PHP 7.4
 * compatible (FreePBX 16).
 */

namespace Modules\ModuleFeatpkg\Lib;

use InvalidArgumentException;
use RuntimeException;
use Throwable;

/** A request the page cannot serve: an HTTP-ish status (400, 409, 500) and a message for people. */
class FeatpkgPageError extends RuntimeException
{
    public function __construct(int $status, string $message, ?Throwable $previous = null)
    {
        parent::__construct($message, $status, $previous);
    }

    /** 400 bad request or unknown action, 409 another change is running, 500 featpkg failed. */
    public function status(): int
    {
        return (int) $this->getCode();
    }
}

class FeatpkgPage
{
    /** The actions a request may name. */
    public const ACTIONS = ['schema', 'status', 'preview', 'apply', 'remove', 'rollback', 'job'];

    /** Actions that change the PBX: POST only, one at a time, as a background job. */
    public const CHANGES = ['apply', 'remove', 'rollback'];

    /** `featpkg: progress <step>` lines featpkg prints on stderr with --progress, in order. */
    public const STEPS = ['plan', 'write', 'reload', 'verify'];

    /** Jobs kept (the newest); older ones are deleted when a new one starts. */
    public const KEEP_JOBS = 20;

    /** Jobs live in <data dir>/page-jobs/<id>/. */
    public const JOBS_DIR = 'page-jobs';

    /** Seconds a new job may take before its runner has started. */
    public const START_GRACE = 30;

    private const FEATURE_ID = '/^[a-z0-9][a-z0-9-]{0,63}$/D';
    private const JOB_ID = '/^[a-f0-9]{16,32}$/D';
    private const MAX_PARAMS_BYTES = 262144;

    /** @var FeatpkgRunner */
    private $runner;

    /** @var string "mikopbx" or "freepbx" */
    private $pbx;

    /** @var string where the saved parameters and the jobs live */
    private $dataDir;

    /** @var string[] the target options every PBX command gets */
    private $targetArgs;

    /** @var string the admin's language, for the page ("" when unknown) */
    private $lang;

    /** @var string|null the PHP CLI that runs bin/featpkg-job.php (null: found when needed) */
    private $php;

    /**
     * @param string[] $targetArgs `$runner->mikopbxTargetArgs()` on MikoPBX, `['--target', 'freepbx']` on FreePBX
     * @param string|null $php the PHP CLI binary for the job runner (default: this one when it is the CLI, else found on disk)
     */
    public function __construct(FeatpkgRunner $runner, string $pbx, string $dataDir, array $targetArgs, string $lang = '', ?string $php = null)
    {
        if ($pbx !== 'mikopbx' && $pbx !== 'freepbx') {
            throw new InvalidArgumentException("unknown PBX kind \"$pbx\" (mikopbx or freepbx)");
        }
        $this->runner = $runner;
        $this->pbx = $pbx;
        $this->dataDir = rtrim($dataDir, '/');
        $this->targetArgs = array_map('strval', array_values($targetArgs));
        $this->lang = $lang;
        $this->php = $php;
    }

    /** The file the page saves the parameters in (featpkg reads it with --params). */
    public function paramsFile(): string
    {
        return $this->dataDir . '/' . FeatpkgRunner::PARAMS_FILE;
    }

    /** The admin's selection, recorded after each change made here (FeatpkgRunner::FEATURES_FILE). */
    public function featuresFile(): string
    {
        return $this->dataDir . '/' . FeatpkgRunner::FEATURES_FILE;
    }

    public function jobsDir(): string
    {
        return $this->dataDir . '/' . self::JOBS_DIR;
    }

    /**
     * Serves one request.
     *
     * @param array<string, mixed> $fields the request's fields (only the ones an action names are read)
     * @param string $method the HTTP method ("" when the PBX does not say)
     * @return array<string, mixed> the payload
     * @throws FeatpkgPageError
     */
    public function handle(string $action, array $fields, string $method = 'POST'): array
    {
        if (!in_array($action, self::ACTIONS, true)) {
            throw new FeatpkgPageError(400, 'unknown action');
        }
        $method = strtoupper(trim($method));
        if (in_array($action, self::CHANGES, true) && $method !== '' && $method !== 'POST') {
            throw new FeatpkgPageError(400, "$action changes the PBX: send it as POST");
        }
        try {
            switch ($action) {
                case 'schema':
                    return $this->schema();
                case 'status':
                    return $this->status();
                case 'preview':
                    return $this->preview($fields);
                case 'apply':
                    return $this->apply($fields);
                case 'remove':
                    return $this->remove($fields);
                case 'rollback':
                    return $this->rollback();
                case 'job':
                    return $this->job($fields);
            }
        } catch (FeatpkgPageError $e) {
            throw $e;
        } catch (Throwable $e) {
            throw new FeatpkgPageError(500, $e->getMessage(), $e);
        }
        throw new FeatpkgPageError(400, 'unknown action');
    }

    // ---- actions ----------------------------------------------------------

    /** @return array<string, mixed> */
    private function schema(): array
    {
        // schema takes only the PBX kind: it reads the bundle, not the PBX.
        $schema = $this->object($this->featpkgJson(
            ['schema', '--json', '--bundle', $this->runner->moduleDir(), '--target', $this->pbx],
            [0]
        ), 'schema');
        $schema['pbx'] = $this->pbx;
        $schema['lang'] = $this->lang;
        $schema['saved_params'] = $this->savedParams();
        $schema['allow_restart'] = $this->savedAllowRestart();
        $schema['job'] = $this->runningJob();
        return $schema;
    }

    /** @return array<string, mixed> */
    private function status(): array
    {
        // featpkg would wait for the running change's lock (up to --lock-wait).
        $job = $this->runningJob();
        if ($job !== null) {
            throw new FeatpkgPageError(409, "a change is running (job $job): status follows when it has finished");
        }
        return [
            'installed' => $this->featpkgJson(array_merge(['status', '--json'], $this->targetArgs), [0]),
            // verify exits 1 when it found drift, and still prints its JSON.
            'drift' => $this->featpkgJson(array_merge(['verify', '--json'], $this->targetArgs), [0, 1]),
        ];
    }

    /**
     * A dry run with the parameters as given: featpkg's JSON as it printed it,
     * a refusal (exit 2, {"error": …}) included.
     *
     * @param array<string, mixed> $fields
     * @return array<string, mixed>
     */
    private function preview(array $fields): array
    {
        // featpkg would wait for the running change's lock (up to --lock-wait).
        $job = $this->runningJob();
        if ($job !== null) {
            throw new FeatpkgPageError(409, "a change is running (job $job): preview again when it has finished");
        }
        $params = $this->paramsField($fields);
        $features = $this->featuresField($fields);
        $allowRestart = $this->allowRestartField($fields);
        $this->ensureDir($this->dataDir);
        $file = $this->writePrivateFile($this->dataDir, 'preview', $params);
        try {
            $args = array_merge(
                ['install', $this->runner->moduleDir()],
                $this->targetArgs,
                ['--params', $file, '--features', $features, '--dry-run', '--json'],
                $this->restartArgs($allowRestart)
            );
            $result = $this->runner->exec($args);
        } finally {
            @unlink($file);
        }
        return $this->object($this->decodeOutput($args, $result, [0, 2]), 'install --dry-run');
    }

    /**
     * Saves the parameters (and, on MikoPBX, the restart permission) and
     * starts the install as a job.
     *
     * @param array<string, mixed> $fields
     * @return array{job: string}
     */
    private function apply(array $fields): array
    {
        $params = $this->paramsField($fields);
        $features = $this->featuresField($fields);
        $allowRestart = $this->allowRestartField($fields);
        return $this->startJob('apply', function () use ($params, $features, $allowRestart): array {
            $this->writeAtomically($this->paramsFile(), $params);
            if ($this->pbx === 'mikopbx' && $allowRestart !== null) {
                $this->saveAllowRestart($allowRestart);
            }
            return array_merge(
                ['install', $this->runner->moduleDir()],
                $this->targetArgs,
                ['--params', $this->paramsFile(), '--features', $features, '--json', '--progress'],
                $this->restartArgs($allowRestart)
            );
        });
    }

    /**
     * @param array<string, mixed> $fields
     * @return array{job: string}
     */
    private function remove(array $fields): array
    {
        $feature = $this->stringField($fields, 'feature');
        if (!preg_match(self::FEATURE_ID, $feature)) {
            throw new FeatpkgPageError(400, 'feature: ' . $this->badId($feature));
        }
        return $this->startJob('remove', function () use ($feature): array {
            return array_merge(
                ['uninstall', $feature],
                $this->targetArgs,
                ['--json', '--progress'],
                $this->restartArgs(null)
            );
        });
    }

    /** @return array{job: string} */
    private function rollback(): array
    {
        return $this->startJob('rollback', function (): array {
            return array_merge(['rollback'], $this->targetArgs, ['--json', '--progress'], $this->restartArgs(null));
        });
    }

    /**
     * @param array<string, mixed> $fields
     * @return array<string, mixed>
     */
    private function job(array $fields): array
    {
        $id = $this->stringField($fields, 'id');
        if (!preg_match(self::JOB_ID, $id)) {
            throw new FeatpkgPageError(400, 'id: not a job id');
        }
        $dir = $this->jobsDir() . '/' . $id;
        if (!is_dir($dir)) {
            throw new FeatpkgPageError(400, 'id: no such job (only the last ' . self::KEEP_JOBS . ' are kept)');
        }
        return $this->jobReport($id, $dir);
    }

    // ---- fields -----------------------------------------------------------

    /** @param array<string, mixed> $fields */
    private function stringField(array $fields, string $name, bool $required = true): string
    {
        if (!array_key_exists($name, $fields) || $fields[$name] === null) {
            if ($required) {
                throw new FeatpkgPageError(400, "$name: missing");
            }
            return '';
        }
        if (!is_string($fields[$name])) {
            throw new FeatpkgPageError(400, "$name: must be a string");
        }
        return $fields[$name];
    }

    /**
     * `params`: a JSON object {"feature": {"param": "value"}}; returns it as
     * the text featpkg reads (re-encoded: exactly the values checked here).
     *
     * @param array<string, mixed> $fields
     */
    private function paramsField(array $fields): string
    {
        $text = $this->stringField($fields, 'params');
        if (strlen($text) > self::MAX_PARAMS_BYTES) {
            throw new FeatpkgPageError(400, 'params: larger than ' . self::MAX_PARAMS_BYTES . ' bytes');
        }
        $value = json_decode($text, false, 8);
        if (json_last_error() !== JSON_ERROR_NONE) {
            throw new FeatpkgPageError(400, 'params: not JSON (' . json_last_error_msg() . ')');
        }
        if (!($value instanceof \stdClass)) {
            throw new FeatpkgPageError(400, 'params: must be a JSON object {"feature": {"parameter": "value"}}');
        }
        $out = [];
        foreach (get_object_vars($value) as $feature => $values) {
            $feature = (string) $feature;
            if (!($values instanceof \stdClass)) {
                throw new FeatpkgPageError(400, 'params: ' . json_encode($feature) . ' must be an object of parameters');
            }
            $out[$feature] = [];
            foreach (get_object_vars($values) as $name => $v) {
                $name = (string) $name;
                if (!is_string($v)) {
                    throw new FeatpkgPageError(400, 'params: ' . json_encode($feature) . '.' . json_encode($name) . ' must be a string');
                }
                $out[$feature][$name] = $v;
            }
        }
        $json = json_encode($out, JSON_FORCE_OBJECT | JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        if ($json === false) {
            throw new FeatpkgPageError(400, 'params: cannot be encoded (' . json_last_error_msg() . ')');
        }
        return $json . "\n";
    }

    /**
     * `features`: comma-separated feature ids; returns them joined by commas.
     *
     * @param array<string, mixed> $fields
     */
    private function featuresField(array $fields): string
    {
        $ids = [];
        foreach (explode(',', $this->stringField($fields, 'features')) as $id) {
            $id = trim($id, " \t");
            if ($id === '') {
                continue;
            }
            if (!preg_match(self::FEATURE_ID, $id)) {
                throw new FeatpkgPageError(400, 'features: ' . $this->badId($id));
            }
            if (!in_array($id, $ids, true)) {
                $ids[] = $id;
            }
        }
        if ($ids === []) {
            throw new FeatpkgPageError(400, 'features: choose at least one feature');
        }
        return implode(',', $ids);
    }

    /**
     * `allow_restart`: "1" or "0" (MikoPBX only); null when not given (the
     * saved setting holds) or on FreePBX (nothing there restarts Asterisk).
     *
     * @param array<string, mixed> $fields
     */
    private function allowRestartField(array $fields): ?bool
    {
        $value = $this->stringField($fields, 'allow_restart', false);
        if ($value === '') {
            return null;
        }
        if ($value !== '1' && $value !== '0') {
            throw new FeatpkgPageError(400, 'allow_restart: must be "1" or "0"');
        }
        return $this->pbx === 'mikopbx' ? $value === '1' : null;
    }

    private function badId(string $id): string
    {
        return json_encode(substr($id, 0, 80), JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE)
            . ' is not a feature id (lower-case letters, digits and "-", at most 64)';
    }

    /**
     * `--allow-restart` when allowed: the request's choice, else the saved
     * setting (MikoPBX); never on FreePBX.
     *
     * @return string[]
     */
    private function restartArgs(?bool $allowRestart): array
    {
        if ($this->pbx !== 'mikopbx') {
            return [];
        }
        $allow = $allowRestart ?? $this->runner->mikopbxAllowRestart();
        return $allow ? ['--allow-restart'] : [];
    }

    // ---- saved settings ---------------------------------------------------

    /** @return \stdClass|array<string, mixed> the saved parameters ({} when none) */
    private function savedParams()
    {
        $path = $this->paramsFile();
        if (!is_file($path)) {
            return new \stdClass();
        }
        $text = @file_get_contents($path);
        if ($text === false) {
            throw new RuntimeException("$path cannot be read");
        }
        $value = json_decode($text, false);
        if (!($value instanceof \stdClass)) {
            throw new RuntimeException("$path is not a JSON object: correct or delete it");
        }
        return $value;
    }

    private function savedAllowRestart(): bool
    {
        return $this->pbx === 'mikopbx' ? $this->runner->mikopbxAllowRestart() : false;
    }

    /** MikoPBX: `{"allow_restart": bool}` in db/featpkg-settings.json, other settings kept. */
    private function saveAllowRestart(bool $allow): void
    {
        $path = $this->runner->moduleDir() . '/' . FeatpkgRunner::MIKOPBX_SETTINGS;
        $settings = [];
        if (is_file($path)) {
            $old = json_decode((string) @file_get_contents($path), true);
            if (is_array($old)) {
                $settings = $old;
            }
        }
        $settings['allow_restart'] = $allow;
        $this->ensureDir(dirname($path));
        $this->writeAtomically($path, json_encode($settings, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_FORCE_OBJECT) . "\n");
    }

    // ---- featpkg ----------------------------------------------------------

    /**
     * Runs featpkg and decodes its JSON (objects stay objects).
     *
     * @param string[] $args
     * @param int[] $okCodes
     * @return mixed
     */
    private function featpkgJson(array $args, array $okCodes)
    {
        return $this->decodeOutput($args, $this->runner->exec($args), $okCodes);
    }

    /**
     * @param string[] $args
     * @param array{stdout: string, stderr: string, code: int} $result
     * @param int[] $okCodes
     * @return mixed
     */
    private function decodeOutput(array $args, array $result, array $okCodes)
    {
        $stderr = trim(self::withoutProgress($result['stderr']));
        if (!in_array($result['code'], $okCodes, true)) {
            throw new FeatpkgPageError(500, sprintf(
                'featpkg %s failed (exit %d): %s',
                $args[0],
                $result['code'],
                $stderr !== '' ? $stderr : (trim($result['stdout']) !== '' ? trim($result['stdout']) : 'it printed no message')
            ));
        }
        $value = json_decode($result['stdout'], false);
        if ($value === null && json_last_error() !== JSON_ERROR_NONE) {
            throw new FeatpkgPageError(500, sprintf(
                'featpkg %s printed no JSON (exit %d)%s',
                $args[0],
                $result['code'],
                $stderr !== '' ? ': ' . $stderr : ''
            ));
        }
        return $value;
    }

    /**
     * A JSON object as the payload's top level (PBXApiResult::$data is an array).
     *
     * @param mixed $value
     * @return array<string, mixed>
     */
    private function object($value, string $what): array
    {
        if (!($value instanceof \stdClass)) {
            throw new FeatpkgPageError(500, "featpkg $what printed JSON that is not an object");
        }
        return get_object_vars($value);
    }

    private static function withoutProgress(string $stderr): string
    {
        $lines = [];
        foreach (preg_split('/\r?\n/', $stderr) as $line) {
            if (!preg_match('/^featpkg: progress \S+$/', $line)) {
                $lines[] = $line;
            }
        }
        return implode("\n", $lines);
    }

    // ---- jobs -------------------------------------------------------------

    /**
     * Starts a change as a job unless one is running (409). `$prepare` saves
     * what the change needs and returns featpkg's arguments.
     *
     * @param callable(): string[] $prepare
     * @return array{job: string}
     */
    private function startJob(string $kind, callable $prepare): array
    {
        $this->ensureDir($this->dataDir);
        $jobs = $this->jobsDir();
        $this->ensureDir($jobs);
        $lock = @fopen($jobs . '/.lock', 'c');
        if ($lock === false || !flock($lock, LOCK_EX)) {
            throw new RuntimeException("cannot lock $jobs/.lock");
        }
        try {
            if ($this->runningJob() !== null) {
                throw new FeatpkgPageError(409, 'another change is running: wait for it to finish');
            }
            $argv = array_merge([$this->runner->binary()], array_map('strval', $prepare()));
            $id = bin2hex(random_bytes(12));
            $dir = $jobs . '/' . $id;
            if (!@mkdir($dir, 0700) || !chmod($dir, 0700)) {
                throw new RuntimeException("cannot create $dir");
            }
            $this->writeAtomically($dir . '/meta.json', json_encode(['kind' => $kind, 'created' => microtime(true)]) . "\n");
            $this->writeAtomically($dir . '/argv.json', json_encode($argv, JSON_UNESCAPED_SLASHES) . "\n");
            // What the runner records once featpkg succeeded (bin/featpkg-job.php).
            $this->writeAtomically($dir . '/selection.json', json_encode([
                'status' => array_merge([$argv[0], 'status', '--json'], $this->targetArgs),
                'bundle' => $this->runner->bundleName(),
                'file' => $this->featuresFile(),
            ], JSON_UNESCAPED_SLASHES) . "\n");
            $this->prune($id);
        } finally {
            flock($lock, LOCK_UN);
            fclose($lock);
        }
        // Outside the lock: a new job counts as running from here (START_GRACE).
        $this->spawn($dir);
        return ['job' => $id];
    }

    /**
     * Starts bin/featpkg-job.php on the job directory, detached: it starts
     * the runner in its own session and returns at once.
     */
    private function spawn(string $dir): void
    {
        $script = $this->runner->moduleDir() . '/bin/featpkg-job.php';
        try {
            if (!is_file($script)) {
                throw new RuntimeException("$script is missing: upload the module archive again");
            }
            $command = [$this->phpCli(), '-f', $script, '--', $dir];
            $spec = self::detachedDescriptors($dir . '/runner.log');
            $process = proc_open($command, $spec, $pipes, '/');
            if (!is_resource($process)) {
                throw new RuntimeException('cannot start ' . $command[0]);
            }
            // The starter only launches the runner (in its own session) and exits.
            $code = proc_close($process);
            if ($code !== 0) {
                $log = trim((string) @file_get_contents($dir . '/runner.log'));
                throw new RuntimeException("the job runner did not start (exit $code)" . ($log !== '' ? ": $log" : ''));
            }
        } catch (Throwable $e) {
            // The job is over before it began: say why in its own files.
            @file_put_contents($dir . '/stderr', $e->getMessage() . "\n", FILE_APPEND);
            @file_put_contents($dir . '/exit', "127\n");
            throw new FeatpkgPageError(500, 'cannot start the change: ' . $e->getMessage(), $e);
        }
    }

    /**
     * Descriptors for a detached child: stdin /dev/null, stdout and stderr to
     * `$log`, and every other descriptor this process holds (sockets, locks,
     * database files) replaced by /dev/null, so the child holds none of them.
     *
     * @return array<int, mixed>
     */
    public static function detachedDescriptors(string $log): array
    {
        $spec = [
            0 => ['file', '/dev/null', 'r'],
            1 => ['file', $log, 'a'],
            2 => ['file', $log, 'a'],
        ];
        $fds = @scandir('/proc/self/fd');
        if (is_array($fds)) {
            foreach ($fds as $fd) {
                // (readlink fails for the directory handle scandir has closed again)
                if (preg_match('/^\d+$/', $fd) && (int) $fd > 2 && (int) $fd < 65536
                    && @readlink('/proc/self/fd/' . $fd) !== false) {
                    $spec[(int) $fd] = ['file', '/dev/null', 'r'];
                }
            }
        }
        return $spec;
    }

    /** The PHP command-line binary (PHP_BINARY is php-fpm or empty inside a web server). */
    private function phpCli(): string
    {
        if ($this->php !== null) {
            return $this->php;
        }
        if (PHP_SAPI === 'cli' && PHP_BINARY !== '' && is_executable(PHP_BINARY)) {
            return PHP_BINARY;
        }
        $candidates = [
            PHP_BINDIR . '/php' . PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION,
            PHP_BINDIR . '/php',
            '/usr/bin/php' . PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION,
            '/usr/bin/php',
            '/usr/local/bin/php',
            '/bin/php',
        ];
        foreach ($candidates as $path) {
            if (is_file($path) && is_executable($path)) {
                return $path;
            }
        }
        throw new RuntimeException('no PHP command-line binary found (tried ' . implode(', ', $candidates) . ')');
    }

    /** The id of the running job, if any. */
    private function runningJob(): ?string
    {
        foreach ($this->jobList() as $id => $created) {
            if ($this->jobState($this->jobsDir() . '/' . $id)['state'] === 'running') {
                return $id;
            }
        }
        return null;
    }

    /**
     * Job ids, newest first, with their creation time.
     *
     * @return array<string, float>
     */
    private function jobList(): array
    {
        $out = [];
        $names = @scandir($this->jobsDir());
        if (!is_array($names)) {
            return [];
        }
        foreach ($names as $name) {
            $dir = $this->jobsDir() . '/' . $name;
            if (preg_match(self::JOB_ID, $name) && is_dir($dir) && !is_link($dir)) {
                $out[$name] = $this->created($dir);
            }
        }
        arsort($out);
        return $out;
    }

    private function created(string $dir): float
    {
        $meta = json_decode((string) @file_get_contents($dir . '/meta.json'), true);
        if (is_array($meta) && is_numeric($meta['created'] ?? null)) {
            return (float) $meta['created'];
        }
        $mtime = @filemtime($dir);
        return $mtime === false ? 0.0 : (float) $mtime;
    }

    /** Deletes all but the newest KEEP_JOBS jobs (never a running one, never $keep). */
    private function prune(string $keep): void
    {
        $n = 0;
        foreach ($this->jobList() as $id => $created) {
            $n++;
            if ($n <= self::KEEP_JOBS || $id === $keep) {
                continue;
            }
            $dir = $this->jobsDir() . '/' . $id;
            if ($this->jobState($dir)['state'] === 'running') {
                continue;
            }
            foreach ((array) @scandir($dir) as $name) {
                if ($name !== '.' && $name !== '..' && $name !== false) {
                    @unlink($dir . '/' . $name);
                }
            }
            @rmdir($dir);
        }
    }

    /**
     * running, done or failed; for a dead runner, why.
     *
     * @return array{state: string, code: int|null, lost: string}
     */
    private function jobState(string $dir): array
    {
        $exit = $this->exitCode($dir);
        if ($exit !== null) {
            return ['state' => $exit === 0 ? 'done' : 'failed', 'code' => $exit, 'lost' => ''];
        }
        // The runner holds <job>/lock while it lives (and featpkg inherits it).
        $lock = @fopen($dir . '/lock', 'c');
        if ($lock !== false) {
            $free = flock($lock, LOCK_EX | LOCK_NB);
            if ($free) {
                flock($lock, LOCK_UN);
            }
            fclose($lock);
            if (!$free) {
                return ['state' => 'running', 'code' => null, 'lost' => ''];
            }
        }
        clearstatcache();
        $exit = $this->exitCode($dir);
        if ($exit !== null) {
            return ['state' => $exit === 0 ? 'done' : 'failed', 'code' => $exit, 'lost' => ''];
        }
        if (!is_file($dir . '/pid')) {
            if (microtime(true) - $this->created($dir) < self::START_GRACE) {
                return ['state' => 'running', 'code' => null, 'lost' => ''];
            }
            return ['state' => 'failed', 'code' => null, 'lost' => 'the change never started'];
        }
        return ['state' => 'failed', 'code' => null, 'lost' => 'the change stopped without a result (its runner was killed); featpkg finishes or undoes an interrupted change on its next run, so check the status'];
    }

    private function exitCode(string $dir): ?int
    {
        $text = @file_get_contents($dir . '/exit');
        if ($text === false || !preg_match('/^-?\d+\s*$/', $text)) {
            return null;
        }
        return (int) $text;
    }

    /** @return array<string, mixed> */
    private function jobReport(string $id, string $dir): array
    {
        $state = $this->jobState($dir);
        $steps = [];
        foreach (preg_split('/\n/', (string) @file_get_contents($dir . '/steps')) as $step) {
            if (in_array($step, self::STEPS, true)) {
                $steps[] = $step;
            }
        }
        $result = null;
        $stdout = (string) @file_get_contents($dir . '/stdout');
        if (trim($stdout) !== '') {
            $result = json_decode($stdout, false);
        }
        $meta = json_decode((string) @file_get_contents($dir . '/meta.json'), true);
        $message = '';
        if ($state['state'] === 'failed') {
            $message = trim(self::withoutProgress((string) @file_get_contents($dir . '/stderr')));
            if ($state['lost'] !== '') {
                $log = trim((string) @file_get_contents($dir . '/runner.log'));
                $message = trim($state['lost'] . ($log !== '' ? ": $log" : '') . "\n" . $message);
            }
            if ($message === '') {
                $message = 'featpkg exited with ' . $state['code'] . ' without a message';
            }
        }
        return [
            'id' => $id,
            'kind' => is_array($meta) && is_string($meta['kind'] ?? null) ? $meta['kind'] : '',
            'state' => $state['state'],
            'steps' => $steps,
            'result' => $result,
            'message' => $message,
        ];
    }

    // ---- files ------------------------------------------------------------

    private function ensureDir(string $dir): void
    {
        if (is_dir($dir)) {
            return;
        }
        if (!@mkdir($dir, 0700, true) && !is_dir($dir)) {
            throw new RuntimeException("cannot create $dir");
        }
        @chmod($dir, 0700);
    }

    /**
     * A new file in `$dir` readable by this user only (0600 before any byte
     * is written) holding `$content`; returns its path.
     */
    private function writePrivateFile(string $dir, string $tag, string $content): string
    {
        return FeatpkgRunner::writePrivateFile($dir, $tag, $content);
    }

    /** Replaces `$path` with `$content` (0600) in one step: a private temp file renamed over it. */
    private function writeAtomically(string $path, string $content): void
    {
        FeatpkgRunner::replaceFile($path, $content);
    }
}
